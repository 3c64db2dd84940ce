"""``cxr_net`` outputs of one radiograph to the ``cxr`` ensemble's outputs.

numpy only; used by the ``cxr_postprocess`` Triton model, the Triton benchmark and their
tests.

- ``PROBABILITIES`` [L]: the sigmoid of the logits.
- ``POSITIVE`` [L]: ``PROBABILITIES >= thresholds`` (one threshold per label, chosen on
  validation data and published by the export).
- ``CAM`` [L, H', W'] uint8: each label's class activation map mapped onto the radiograph
  (bicubic to the input size, padding cropped, resized, see ``medvision_contract.cams``) on
  a grid of the image's aspect ratio whose longer side is ``cam_max_side``, min-max scaled
  to 0..255 on its own. The maps come from a 7×7 or 8×8 feature map, so a 256-pixel grid
  shows all they hold; the viewer stretches it over the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from medvision_contract.cams import PostprocessParameters, cams_to_display, sigmoid

Array = npt.NDArray[Any]


def cxr_outputs(
    logits: Array, cams: Array, geometry: Array, parameters: PostprocessParameters
) -> dict[str, Array]:
    """The three ``cxr`` outputs from ``logits`` [1, L] (or [L]), ``cams`` [1, L, h, w] (or
    [L, h, w]) and the preprocessing ``geometry`` [5]; raises ``ValueError`` for
    inconsistent shapes."""
    labels = len(parameters.thresholds)
    logits = np.asarray(logits, dtype=np.float32)
    if logits.size != labels:
        raise ValueError(f"LOGITS must hold {labels} values, got {logits.shape}")
    if cams.ndim == 4 and cams.shape[0] == 1:
        cams = cams[0]
    if cams.ndim != 3 or cams.shape[0] != labels or 0 in cams.shape:
        raise ValueError(f"CAMS must be [1, {labels}, h, w], got {cams.shape}")
    probabilities = sigmoid(logits.reshape(-1))
    return {
        "PROBABILITIES": probabilities,
        "POSITIVE": probabilities >= parameters.thresholds,
        "CAM": cams_to_display(cams, geometry, parameters.input_size, parameters.cam_max_side),
    }
