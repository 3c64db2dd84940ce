"""Class-activation maps stored as one image: the maps of all labels stacked top to bottom.

A CAM comes from a 7×7 or 8×8 feature map upsampled to the image size, so a copy reduced
to ``max_side`` pixels loses nothing a viewer can show; one PNG per radiograph keeps the
object store writes (each one fsynced) to one per image instead of one per label.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from control.errors import InvalidInputError

CAM_ATLAS_SIDE = 128


def pack_cams(cams: npt.NDArray[np.uint8], max_side: int = CAM_ATLAS_SIDE) -> npt.NDArray[np.uint8]:
    """The ``[L, H, W]`` maps reduced (by sampling every k-th pixel, centred) so that the
    longer side is at most ``max_side``, stacked into one ``[L * h, w]`` image."""
    if cams.ndim != 3 or cams.dtype != np.uint8 or 0 in cams.shape:
        raise InvalidInputError(
            f"CAMs must be a non-empty uint8 [labels, height, width] array, not {cams.shape}",
            code="invalid_image",
        )
    step = max(1, math.ceil(max(cams.shape[1:]) / max_side))
    start = step // 2
    reduced = cams[:, start::step, start::step]
    return np.ascontiguousarray(reduced.reshape(-1, reduced.shape[2]))


def unpack_cam(atlas: npt.NDArray[np.uint8], index: int, count: int) -> npt.NDArray[np.uint8]:
    """Map ``index`` of the ``count`` maps packed by :func:`pack_cams`."""
    if count < 1 or atlas.ndim != 2 or atlas.shape[0] % count:
        raise InvalidInputError(
            f"a CAM image of shape {atlas.shape} does not hold {count} maps",
            code="corrupt_cam",
        )
    if not 0 <= index < count:
        raise InvalidInputError(f"no CAM number {index} of {count}", code="cam_not_found")
    height = atlas.shape[0] // count
    return atlas[index * height : (index + 1) * height]
