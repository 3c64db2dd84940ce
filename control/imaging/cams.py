"""Class-activation maps stored as one image: the maps of all labels stacked top to bottom.

A CAM comes from a 7×7 or 8×8 feature map; Triton serves it on a grid of the image's
aspect ratio whose longer side is the post-processing model's ``cam_max_side`` (256 by
default), and a copy reduced to ``max_side`` pixels loses nothing a viewer can show (it
stretches the map over the image). One PNG per radiograph keeps the object store writes
(each one fsynced) to one per image instead of one per label.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from control.errors import InvalidInputError
from control.imaging.render import encode_png
from medvision_contract.cams import longest_side_shape

CAM_ATLAS_SIDE = 128


def pack_cams(cams: npt.NDArray[np.uint8], max_side: int = CAM_ATLAS_SIDE) -> npt.NDArray[np.uint8]:
    """The ``[L, H, W]`` maps stacked into one ``[L * h, w]`` image, each reduced to the
    aspect ratio kept with the longer side ``max_side`` when it is longer (the mean of the
    pixels each output pixel covers: Pillow's box filter, a few ms for 14 maps where the
    numpy resize of the stack took 12 ms); smaller maps are kept whole."""
    if cams.ndim != 3 or cams.dtype != np.uint8 or 0 in cams.shape:
        raise InvalidInputError(
            f"CAMs must be a non-empty uint8 [labels, height, width] array, not {cams.shape}",
            code="invalid_image",
        )
    shape = (cams.shape[1], cams.shape[2])
    if max(shape) > max_side:
        height, width = longest_side_shape(shape, max_side)
        cams = np.stack(
            [
                np.asarray(Image.fromarray(cam).resize((width, height), Image.Resampling.BOX))
                for cam in cams
            ]
        )
    return np.ascontiguousarray(cams.reshape(-1, cams.shape[2]))


def atlas_png(maps: npt.NDArray[np.uint8]) -> bytes:
    """The ``[L, H, W]`` maps as the stored PNG atlas (:func:`pack_cams`, then PNG)."""
    return encode_png(pack_cams(maps))


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
