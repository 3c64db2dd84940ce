"""Re-export of :mod:`medvision_contract.regions` for code not yet switched to the contract."""

from medvision_contract.regions import (
    ED,
    ET,
    NCR,
    labels_to_regions,
    region_volumes_ml,
    regions_to_labels,
)

__all__ = ["ED", "ET", "NCR", "labels_to_regions", "region_volumes_ml", "regions_to_labels"]
