"""WADO-RS (PS3.18 10.4): which stored instances a retrieve names, and what is made of them.

Instances are sent as stored (their bytes verified against the recorded SHA-256) or, when
asked for, re-encoded in Explicit VR Little Endian. Frames are the decoded pixel values of
each frame, uncompressed, little endian. Rendered images reuse the viewer's rendering
(:func:`control.imaging.render.render_frame`): grey images windowed by ``window`` (or the
image's own window), MONOCHROME1 inverted, then fitted into ``viewport``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels.utils import get_nr_frames, pixel_array
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Instance, Series, Study
from control.dicom.nifti import NIFTI_SOP_CLASS
from control.domain.dicomweb.media import JPEG, NotAcceptableError
from control.errors import InvalidInputError, NotFoundError
from control.imaging.render import Window, encode_png, render_frame, require_window

__all__ = [
    "MAX_FRAMES_PER_REQUEST",
    "RenderOptions",
    "frame_bytes",
    "parse_frame_list",
    "parse_render_options",
    "render",
    "select_instances",
    "to_explicit_little_endian",
]

#: Frames one request may list (each is decoded and sent).
MAX_FRAMES_PER_REQUEST = 1024
MAX_VIEWPORT = 8192
_FRAME_LIST = re.compile(r"^\d{1,6}(,\d{1,6})*$")


async def select_instances(
    session: AsyncSession,
    study: Study,
    series_uid: str | None = None,
    instance_uid: str | None = None,
) -> list[Instance]:
    """The DICOM instances of ``study`` (of one series, or one instance), in arrival order.

    ``404 series_not_found`` / ``instance_not_found`` when the series or instance is not
    in the study.
    """
    statement = (
        select(Instance)
        .join(Series, Instance.series_id == Series.id)
        .where(Series.study_id == study.id, Instance.sop_class_uid != NIFTI_SOP_CLASS)
        .order_by(Series.created_at, Instance.created_at, Instance.id)
    )
    if series_uid is not None:
        statement = statement.where(Series.series_uid == series_uid)
    if instance_uid is not None:
        statement = statement.where(Instance.sop_instance_uid == instance_uid)
    instances = list((await session.scalars(statement)).all())
    if instances:
        return instances
    if series_uid is not None:
        series = await session.scalar(
            select(Series.id).where(Series.study_id == study.id, Series.series_uid == series_uid)
        )
        if series is None:
            raise NotFoundError("no such series in this study", code="series_not_found")
    if instance_uid is not None:
        raise NotFoundError("no such instance in this series", code="instance_not_found")
    raise NotFoundError("no DICOM instances in this study", code="study_not_found")


def to_explicit_little_endian(payload: bytes) -> bytes:
    """``payload`` re-encoded in Explicit VR Little Endian (itself when already so).

    Compressed pixel data is decoded. ``406 transcoding_failed`` when it cannot be (no
    decoder for the stored transfer syntax): ask for ``transfer-syntax=*`` instead.
    """
    ds = pydicom.dcmread(BytesIO(payload))
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax == ExplicitVRLittleEndian:
        return payload
    try:
        if syntax is not None and syntax.is_compressed:
            ds.decompress()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        buffer = BytesIO()
        ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
    except Exception as exc:  # decoder plugins raise arbitrary exception types
        raise NotAcceptableError(
            "this instance cannot be re-encoded in Explicit VR Little Endian; "
            "ask for transfer-syntax=* (as stored)",
            code="transcoding_failed",
        ) from exc
    return buffer.getvalue()


def parse_frame_list(text: str) -> list[int]:
    """The 1-based frame numbers of a ``frames/{list}`` path (``1`` or ``1,3,5``).

    ``400 invalid_frame_list`` for anything else or more than
    :data:`MAX_FRAMES_PER_REQUEST` numbers.
    """
    if not _FRAME_LIST.match(text):
        raise InvalidInputError(
            "frames must be a comma-separated list of frame numbers from 1",
            code="invalid_frame_list",
        )
    numbers = [int(item) for item in text.split(",")]
    if len(numbers) > MAX_FRAMES_PER_REQUEST or min(numbers) < 1:
        raise InvalidInputError(
            f"frames must be 1 to {MAX_FRAMES_PER_REQUEST} numbers, each at least 1",
            code="invalid_frame_list",
        )
    return numbers


def _frame_out_of_range(frame: int, frames: int) -> NotFoundError:
    return NotFoundError(
        f"frame {frame} does not exist; the instance has {frames} frame(s)",
        code="frame_not_found",
        detail={"frame": frame, "frames": frames},
    )


def frame_bytes(payload: bytes, numbers: list[int]) -> list[bytes]:
    """The decoded pixel values of each listed (1-based) frame, little endian, row by row.

    ``404 frame_not_found`` for a number past the last frame; ``400 pixel_decode_failed``
    when the pixel data cannot be decoded.
    """
    ds = pydicom.dcmread(BytesIO(payload))
    if "PixelData" not in ds:
        raise NotFoundError("this instance has no pixel data", code="frame_not_found")
    frames = get_nr_frames(ds, warn=False)
    for number in numbers:
        if number > frames:
            raise _frame_out_of_range(number, frames)
    result = []
    for number in numbers:
        try:
            values = pixel_array(ds, index=number - 1)
        except Exception as exc:  # decoder plugins raise arbitrary exception types
            raise InvalidInputError(
                f"frame {number}: the pixel data could not be decoded",
                code="pixel_decode_failed",
            ) from exc
        little = values.astype(values.dtype.newbyteorder("<"), copy=False)
        result.append(np.ascontiguousarray(little).tobytes())
    return result


@dataclass(frozen=True)
class RenderOptions:
    """The query of a rendered retrieve: ``window`` (None: the image's own), ``viewport``
    (columns, rows to fit into; None: the image's size) and JPEG ``quality``."""

    window: Window | None
    viewport: tuple[int, int] | None
    quality: int


def _numbers(name: str, text: str, count: tuple[int, ...]) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in count or not all(math.isfinite(value) for value in values):
        raise InvalidInputError(
            f"{name} must be {' or '.join(str(n) for n in count)} comma-separated numbers",
            code=f"invalid_{name}",
        )
    return values


def parse_render_options(
    window: str | None, viewport: str | None, quality: str | None
) -> RenderOptions:
    """Check the rendered-retrieve query (PS3.18 8.3.5.1).

    ``window=center,width,function`` with function ``linear`` (``linear-exact`` and
    ``sigmoid`` answer ``400 unsupported_window_function``); ``viewport=vw,vh`` (a source
    region ``sx,sy,sw,sh`` after them answers ``400 invalid_viewport``); ``quality`` 1-100.
    """
    chosen: Window | None = None
    if window is not None:
        center_text, _, rest = window.partition(",")
        width_text, _, function = rest.partition(",")
        if function.strip().lower() not in ("", "linear"):
            raise InvalidInputError(
                "only the linear window function is supported",
                code="unsupported_window_function",
            )
        center, width = _numbers("window", f"{center_text},{width_text}", (2,))
        chosen = require_window(center, width)
    size: tuple[int, int] | None = None
    if viewport is not None:
        columns, rows = _numbers("viewport", viewport, (2,))
        if not (1 <= columns <= MAX_VIEWPORT and 1 <= rows <= MAX_VIEWPORT):
            raise InvalidInputError(
                f"viewport sizes must be from 1 to {MAX_VIEWPORT}", code="invalid_viewport"
            )
        size = (int(columns), int(rows))
    level = 90
    if quality is not None:
        (value,) = _numbers("quality", quality, (1,))
        if not 1 <= value <= 100:
            raise InvalidInputError("quality must be from 1 to 100", code="invalid_quality")
        level = int(value)
    return RenderOptions(chosen, size, level)


def render(payload: bytes, frame: int, options: RenderOptions, media_type: str) -> bytes:
    """Frame ``frame`` (1-based) of a stored instance as ``image/jpeg`` or ``image/png``.

    Raises as :func:`control.imaging.render.render_frame` does, and ``404 frame_not_found``
    for a frame past the last.
    """
    ds = pydicom.dcmread(BytesIO(payload))
    frames = get_nr_frames(ds, warn=False) if "PixelData" in ds else 0
    if not 1 <= frame <= frames:
        raise _frame_out_of_range(frame, frames)
    image = render_frame(ds, frame - 1, options.window)
    if options.viewport is not None:
        picture = Image.fromarray(image)
        picture.thumbnail(options.viewport, Image.Resampling.LANCZOS)
        if picture.size[0] < options.viewport[0] and picture.size[1] < options.viewport[1]:
            scale = min(
                options.viewport[0] / picture.size[0], options.viewport[1] / picture.size[1]
            )
            target = (
                max(1, round(picture.size[0] * scale)),
                max(1, round(picture.size[1] * scale)),
            )
            picture = picture.resize(target, Image.Resampling.LANCZOS)
        image = np.asarray(picture)
    if media_type == JPEG:
        buffer = BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=options.quality)
        return buffer.getvalue()
    return encode_png(image)
