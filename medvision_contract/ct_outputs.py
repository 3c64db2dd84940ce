"""``ct_head_net`` outputs of a study's slices to the ``ct_head`` ensemble's outputs.

numpy only; used by the ``ct_head_postprocess`` Triton model and its tests.

- ``SLICE_PROBABILITIES`` [S, 6]: the sigmoid of each slice's logits.
- ``PROBABILITIES`` [6]: per label the maximum over slices (the study has a bleed when some
  slice has it; the network was trained and evaluated that way).
- ``POSITIVE`` [6]: ``PROBABILITIES >= thresholds`` (chosen on validation slices: a study is
  positive for a label when one of its slices reaches the threshold).
- ``HEATMAP`` [S, H', W'] uint8: per slice the class activation map of ``any`` mapped onto
  the slice (bicubic to the input size, padding cropped, resized, see
  ``medvision_contract.cams``) on a grid of the slice's aspect ratio whose longer side is
  ``cam_max_side``, min-max scaled to 0..255 on its own. A slice whose ``any`` probability is
  below the ``any`` threshold gets an all-zero map: there is nothing on it to point at, and
  a full-range map of noise would draw the reader's eye.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from medvision_contract.cams import PostprocessParameters, cams_to_display, sigmoid

Array = npt.NDArray[Any]
ANY = 0


def ct_head_outputs(
    logits: Array, cams: Array, geometry: Array, parameters: PostprocessParameters
) -> dict[str, Array]:
    """The four ``ct_head`` outputs from slice ``logits`` [S, L], ``cams`` [S, L, h, w] and the
    preprocessing ``geometry`` [5]; raises ``ValueError`` for inconsistent shapes."""
    thresholds = parameters.thresholds
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] != len(thresholds):
        raise ValueError(f"LOGITS must be [slices, {len(thresholds)}], got {logits.shape}")
    if cams.ndim != 4 or cams.shape[:2] != logits.shape or 0 in cams.shape:
        raise ValueError(
            f"CAMS must be [{logits.shape[0]}, {logits.shape[1]}, h, w], got {cams.shape}"
        )
    slice_probabilities = sigmoid(logits)
    probabilities = slice_probabilities.max(axis=0)
    heatmap = cams_to_display(
        cams[:, ANY], geometry, parameters.input_size, parameters.cam_max_side
    )
    heatmap[slice_probabilities[:, ANY] < thresholds[ANY]] = 0
    return {
        "SLICE_PROBABILITIES": slice_probabilities,
        "PROBABILITIES": probabilities,
        "POSITIVE": probabilities >= thresholds,
        "HEATMAP": heatmap,
    }
