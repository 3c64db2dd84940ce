"""Re-export of :mod:`medvision_contract.preprocess` for code not yet switched to the contract."""

from medvision_contract.preprocess import (
    WINDOW_PRESETS,
    apply_modality_lut,
    brain_zscore,
    dicom_to_cxr_input,
    invert_monochrome1,
    padding_geometry,
    resize,
    resize_with_padding,
    undo_resize_with_padding,
    window,
    xray_to_float,
    zscore,
)

__all__ = [
    "WINDOW_PRESETS",
    "apply_modality_lut",
    "brain_zscore",
    "dicom_to_cxr_input",
    "invert_monochrome1",
    "padding_geometry",
    "resize",
    "resize_with_padding",
    "undo_resize_with_padding",
    "window",
    "xray_to_float",
    "zscore",
]
