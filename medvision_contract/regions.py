"""BraTS label maps and nested tumour regions, for numpy arrays and torch tensors alike.

Label values (BraTS 2023): 0 background, 1 necrotic / non-enhancing core (NCR), 2 oedema
(ED), 3 enhancing tumour (ET). Regions, in ``BRATS_REGIONS`` order: ET = {3}, tumour core
TC = {1, 3}, whole tumour WT = {1, 2, 3}; ET is inside TC, TC inside WT.

Torch is never imported here: a tensor can only be passed in once the caller has imported
torch, so this module also serves numpy-only environments (Triton Python models).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from medvision_contract.labels import BRATS_REGIONS

if TYPE_CHECKING:
    import torch

NCR, ED, ET = 1, 2, 3


def _torch_if_tensor(value: Any) -> ModuleType | None:
    """The torch module when ``value`` is a tensor, else None."""
    torch_module = sys.modules.get("torch")
    if torch_module is not None and isinstance(value, torch_module.Tensor):
        return torch_module
    return None


@overload
def labels_to_regions(label_map: torch.Tensor) -> torch.Tensor: ...
@overload
def labels_to_regions(label_map: npt.NDArray[Any]) -> npt.NDArray[np.bool_]: ...
def labels_to_regions(label_map: Any) -> Any:
    """Boolean regions [3, *label_map.shape] in ET, TC, WT order, same kind as the input.

    Raises ``ValueError`` for label values outside 0..3.
    """
    if math.prod(label_map.shape) > 0:
        low, high = int(label_map.min()), int(label_map.max())
        if low < 0 or high > ET:
            raise ValueError(
                f"label values must be in 0..3 (BraTS 2023), found {low}..{high}"
                + (
                    "; label 4 is BraTS 2024's resection cavity (post-operative scans), "
                    "which this model does not segment"
                    if high == 4
                    else ""
                )
            )
    enhancing = label_map == ET
    core = enhancing | (label_map == NCR)
    whole = core | (label_map == ED)
    torch_module = _torch_if_tensor(label_map)
    stack = np.stack if torch_module is None else torch_module.stack
    return stack([enhancing, core, whole])


@overload
def regions_to_labels(regions: torch.Tensor, threshold: float = 0.5) -> torch.Tensor: ...
@overload
def regions_to_labels(
    regions: npt.NDArray[Any], threshold: float = 0.5
) -> npt.NDArray[np.uint8]: ...
def regions_to_labels(regions: Any, threshold: float = 0.5) -> Any:
    """uint8 label map from regions [3, ...] (booleans or probabilities), same kind as input.

    Probabilities count as inside a region when ``>= threshold``. Nesting is enforced with
    WT as the outer boundary: ET and TC only count inside WT; a voxel is 3 if ET, else 1 if
    TC, else 2 if WT, else 0. For valid maps ``regions_to_labels(labels_to_regions(m)) == m``.
    Tensors stay on their device.
    """
    if regions.ndim < 1 or regions.shape[0] != len(BRATS_REGIONS):
        raise ValueError(
            f"regions need {len(BRATS_REGIONS)} channels first, got shape {tuple(regions.shape)}"
        )
    torch_module = _torch_if_tensor(regions)
    if torch_module is None:
        inside = regions if regions.dtype == np.bool_ else regions >= threshold
        labels = np.zeros(regions.shape[1:], dtype=np.uint8)
    else:
        inside = regions if regions.dtype == torch_module.bool else regions >= threshold
        labels = torch_module.zeros(
            regions.shape[1:], dtype=torch_module.uint8, device=regions.device
        )
    whole = inside[2]
    labels[whole] = ED
    labels[inside[1] & whole] = NCR
    labels[inside[0] & whole] = ET
    return labels


def region_volumes_ml(
    label_map: npt.NDArray[Any] | torch.Tensor, spacing_mm: Sequence[float]
) -> dict[str, float]:
    """Volumes of ET, TC and WT in millilitres for a label map on a grid of ``spacing_mm``.

    ``spacing_mm`` gives the voxel size in millimetres along each axis of ``label_map``, in
    the same axis order (1 ml = 1000 mm³). Raises ``ValueError`` when the lengths differ.
    """
    if len(spacing_mm) != label_map.ndim:
        raise ValueError(f"spacing has {len(spacing_mm)} values for a {label_map.ndim}-D label map")
    voxel_ml = math.prod(float(s) for s in spacing_mm) / 1000.0
    regions = labels_to_regions(label_map)
    return {name: int(regions[index].sum()) * voxel_ml for index, name in enumerate(BRATS_REGIONS)}
