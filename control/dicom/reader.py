"""Parse and validate an uploaded DICOM file before anything is stored.

``read_dicom`` either returns a fully validated :class:`ParsedDicom` or raises a
:class:`~control.errors.MedVisionError` subclass with a stable ``code`` and the file name in
``detail``. Checks run cheapest first, and every size limit is checked from the header before
any pixel data is decompressed, so a small file that declares a huge image is rejected without
allocating it.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from io import BytesIO
from typing import TYPE_CHECKING, Any

import pydicom
import pydicom.filereader
import structlog
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from control.dicom import quiet
from control.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaError

if TYPE_CHECKING:
    from control.config import Settings

# pydicom quotes bad values (original UIDs among them) in its warnings: see control.dicom.quiet.
quiet.install()
log = structlog.get_logger("medvision.dicom")

__all__ = [
    "MAX_SEQUENCE_DEPTH",
    "SUPPORTED_SOP_CLASSES",
    "ParsedDicom",
    "UploadLimits",
    "looks_like_dicom",
    "read_dicom",
]

SUPPORTED_SOP_CLASSES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray - For Processing
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
    }
)
"""Image storage SOP classes accepted for upload.

The platform's models read chest radiographs (CR, DX; MG shares the projection X-ray pixel
model) and brain MRI (MR, Enhanced MR); CT and Secondary Capture (digitised films, grayscale
multi-frame captures) are accepted for storage and viewing. Deliberately left out: ultrasound
and X-ray angiography (cine loops, no model consumes them), single-bit and true-colour
multi-frame Secondary Capture (screenshots and masks, not diagnostic images), and every
non-image object (structured reports, RT plans and doses, presentation states, waveforms).
"""

_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_REQUIRED_ATTRIBUTES = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Rows",
    "Columns",
    "BitsAllocated",
)
#: Deepest sequence nesting accepted. Image objects nest a few levels (Enhanced MR/CT
#: functional groups reach about four); nothing MedVision accepts legitimately nears this.
MAX_SEQUENCE_DEPTH = 16
_VALID_BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})
_UNDEFINED_LENGTH = 0xFFFFFFFF
_DELIMITER_ITEM_LENGTH = 8  # (FFFE,E0DD) tag and its zero length
_PREAMBLE_LENGTH = 128
_DICM_MAGIC = b"DICM"
# Groups a data set written without the Part 10 preamble plausibly starts with: File Meta
# Information (0002) or Identifying (0008), in little- or big-endian byte order.
_HEADERLESS_FIRST_GROUPS = (b"\x02\x00", b"\x08\x00", b"\x00\x08")


@dataclass(frozen=True)
class UploadLimits:
    """Size limits applied to every uploaded file (see ``control.config.Settings``)."""

    max_file_bytes: int
    max_image_dimension: int
    max_image_pixels: int
    max_frames: int
    max_volume_voxels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """The limits configured by the ``MEDVISION_MAX_*`` settings."""
        return cls(
            max_file_bytes=settings.max_file_bytes,
            max_image_dimension=settings.max_image_dimension,
            max_image_pixels=settings.max_image_pixels,
            max_frames=settings.max_frames,
            max_volume_voxels=settings.max_volume_voxels,
        )


@dataclass(frozen=True)
class ParsedDicom:
    """A DICOM upload that passed every check in :func:`read_dicom`.

    ``dataset`` holds the parsed elements with the pixel data still encoded exactly as
    uploaded (nothing is decoded into arrays or cached on it); ``sha256`` is the hex digest
    of the uploaded bytes, computed on first use (the ingest hashes what it stores, not the
    upload, so it never pays for this one).
    """

    dataset: pydicom.Dataset
    filename: str
    data: bytes = field(repr=False, compare=False)

    @cached_property
    def sha256(self) -> str:
        """The hex SHA-256 of the uploaded bytes."""
        return hashlib.sha256(self.data).hexdigest()


def looks_like_dicom(data: bytes) -> bool:
    """True when ``data`` is a DICOM Part 10 file or a bare DICOM data set.

    A Part 10 file has ``DICM`` after its 128-byte preamble. A data set without the preamble
    is recognised when its first tag is in group 0002 or 0008 and pydicom can parse it.
    This only sniffs the format; :func:`read_dicom` does the validation.
    """
    if data[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4] == _DICM_MAGIC:
        return True
    if data[:2] not in _HEADERLESS_FIRST_GROUPS:
        return False
    try:
        dataset = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=True)
    except Exception:  # any parser failure means "not recognisably DICOM"
        return False
    return len(dataset) > 0


def read_dicom(data: bytes, filename: str, limits: UploadLimits) -> ParsedDicom:
    """Parse ``data`` as DICOM and prove it is a complete, decodable, supported image.

    Returns a :class:`ParsedDicom` only when all checks pass; otherwise raises, in this order:

    * ``PayloadTooLargeError("file_too_large")`` when ``data`` exceeds ``max_file_bytes``;
    * ``UnsupportedMediaError("not_dicom")`` when ``data`` is not DICOM at all;
    * ``InvalidInputError("truncated_dicom")`` when parsing stops part-way, any element is
      shorter than its declared length, or native pixel data is shorter than the image
      header requires;
    * ``InvalidInputError("sequence_too_deep")`` when sequences nest deeper than
      :data:`MAX_SEQUENCE_DEPTH`;
    * ``UnsupportedMediaError("unsupported_sop_class")`` for SOP classes outside
      :data:`SUPPORTED_SOP_CLASSES`;
    * ``InvalidInputError("no_pixel_data")`` without (Float/DoubleFloat) Pixel Data;
    * ``InvalidInputError("missing_attribute")`` when a UID, Rows, Columns or BitsAllocated
      is absent or empty, and ``InvalidInputError("invalid_attribute")`` when one of the
      image dimensions is not a usable positive number;
    * ``PayloadTooLargeError("image_too_large" | "too_many_frames")`` from the header
      limits, before any decompression;
    * ``UnsupportedMediaError("unsupported_transfer_syntax")`` when no installed decoder
      handles the transfer syntax;
    * ``InvalidInputError("pixel_decode_failed")`` when decoding the first frame fails.

    Every error's ``detail`` carries ``{"filename": filename}``. Neither ``data`` nor the
    stored pixel data is modified. A bare data set without File Meta Information gets a
    ``TransferSyntaxUID`` in ``dataset.file_meta`` naming the encoding it was read with.
    """
    if len(data) > limits.max_file_bytes:
        raise PayloadTooLargeError(
            f"{filename}: file is {len(data)} bytes, the limit is {limits.max_file_bytes}",
            code="file_too_large",
            detail={"filename": filename, "bytes": len(data), "limit": limits.max_file_bytes},
        )
    if not looks_like_dicom(data):
        raise UnsupportedMediaError(
            f"{filename}: not a DICOM file", code="not_dicom", detail={"filename": filename}
        )
    if has_preamble := data[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4] == _DICM_MAGIC:
        _check_inflated_size(data, filename, limits)
    dataset = _parse(data, filename, has_preamble)
    _check_sop_class(dataset, filename)
    if not any(keyword in dataset for keyword in _PIXEL_DATA_KEYWORDS):
        raise InvalidInputError(
            f"{filename}: the DICOM object has no pixel data",
            code="no_pixel_data",
            detail={"filename": filename},
        )
    _check_required_attributes(dataset, filename)
    frames = _check_image_size(dataset, filename, limits)
    transfer_syntax = _transfer_syntax(dataset, filename)
    if not transfer_syntax.is_encapsulated:
        _check_native_pixel_length(dataset, filename, frames)
    _decode_first_frame(dataset, filename)
    return ParsedDicom(dataset=dataset, filename=filename, data=data)


def _check_inflated_size(data: bytes, filename: str, limits: UploadLimits) -> None:
    """Bound a Deflated data set's inflated size before pydicom inflates it without limit."""
    stream = BytesIO(data)
    try:
        pydicom.filereader.read_preamble(stream, False)
        file_meta = pydicom.filereader._read_file_meta_info(stream)
    except Exception as exc:  # pydicom signals damage with many exception types
        raise _truncated(filename, f"unreadable file meta information: {exc}") from exc
    if file_meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data[stream.tell() :], limits.max_file_bytes + 1)
    except zlib.error as exc:
        raise _truncated(filename, f"the deflated data set is damaged: {exc}") from exc
    if len(inflated) > limits.max_file_bytes:
        raise PayloadTooLargeError(
            f"{filename}: the deflated data set inflates beyond {limits.max_file_bytes} bytes",
            code="file_too_large",
            detail={"filename": filename, "limit": limits.max_file_bytes},
        )


def _parse(data: bytes, filename: str, has_preamble: bool) -> pydicom.Dataset:
    """Read every element, failing on anything pydicom would silently cut short."""
    try:
        dataset = pydicom.dcmread(BytesIO(data), force=not has_preamble)
    except InvalidDicomError as exc:
        raise UnsupportedMediaError(
            f"{filename}: not a DICOM file ({exc})",
            code="not_dicom",
            detail={"filename": filename},
        ) from exc
    except RecursionError as exc:
        # pydicom parses undefined-length sequences recursively, one level per nesting.
        raise _too_deep(filename) from exc
    except Exception as exc:  # pydicom signals damage with many exception types
        raise _truncated(filename, f"parsing failed: {exc}") from exc
    # pydicom drops every element of the data set when the file ends inside an
    # undefined-length value (such as encapsulated pixel data), leaving only the file meta.
    if len(dataset) == 0:
        raise _truncated(filename, "the file ends before its data set")
    # Element positions of a deflated data set refer to the inflated stream; zlib has
    # already rejected a cut-off deflate stream.
    if dataset.file_meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        _check_fully_consumed(dataset, len(data), filename)
    try:
        invalid = _check_complete(dataset)
    except _TooDeepError as exc:
        raise _too_deep(filename) from exc
    except _TruncatedError as exc:
        raise _truncated(filename, str(exc)) from exc
    except Exception as exc:  # value conversion signals damage with many exception types
        raise _truncated(filename, f"an element could not be read: {exc}") from exc
    if invalid:
        # Tag, VR and problem only: the values (and the file name) may identify the patient.
        log.warning(
            "dicom_invalid_values",
            elements=[f"{item.tag} {item.vr}: {item.problem}" for item in invalid],
            limit=quiet.MAX_REPORTED,
        )
    return dataset


def _check_fully_consumed(dataset: pydicom.Dataset, length: int, filename: str) -> None:
    """Reject data that ends inside an element header, which pydicom silently ignores."""
    last = dataset.get_item(list(dataset.keys())[-1], keep_deferred=True)
    if not isinstance(last, RawDataElement):
        return
    if last.length == _UNDEFINED_LENGTH:
        end = last.value_tell + len(last.value or b"") + _DELIMITER_ITEM_LENGTH
    else:
        end = last.value_tell + last.length
    if end != length:
        raise _truncated(filename, f"the last element ends at byte {end} of {length}")


class _TruncatedError(Exception):
    """An element holds fewer bytes than its header declares."""


class _TooDeepError(Exception):
    """Sequences nest deeper than :data:`MAX_SEQUENCE_DEPTH`."""


def _check_complete(dataset: pydicom.Dataset) -> list[quiet.InvalidValue]:
    """Check declared lengths of all elements, converting each, sequence items included.

    Returns the first :data:`~control.dicom.quiet.MAX_REPORTED` elements whose values break
    their VR's rules (they are kept: the file is still usable, and de-identification
    replaces the UIDs among them).

    The walk is iterative and refuses nesting beyond :data:`MAX_SEQUENCE_DEPTH`: every later
    step (de-identification's copy, writing, the viewer) recurses per level, and a file
    nested hundreds of levels deep would exhaust the interpreter's recursion limit there.
    """
    pending: list[tuple[pydicom.Dataset, int]] = [(dataset, 0)]
    invalid: list[quiet.InvalidValue] = []
    while pending:
        current, depth = pending.pop()
        for tag in list(current.keys()):
            element = current.get_item(tag)
            if (
                isinstance(element, RawDataElement)
                and element.length != _UNDEFINED_LENGTH
                and element.value is not None
                and len(element.value) < element.length
            ):
                raise _TruncatedError(
                    f"element {tag} declares {element.length} bytes but holds {len(element.value)}"
                )
            converted = current[tag]
            if len(invalid) < quiet.MAX_REPORTED and (problem := quiet.invalid_value(converted)):
                invalid.append(problem)
            if converted.VR == "SQ" and len(converted.value):
                if depth + 1 > MAX_SEQUENCE_DEPTH:
                    raise _TooDeepError
                pending.extend((item, depth + 1) for item in converted.value)
    return invalid


def _too_deep(filename: str) -> InvalidInputError:
    return InvalidInputError(
        f"{filename}: DICOM sequences nest deeper than {MAX_SEQUENCE_DEPTH} levels",
        code="sequence_too_deep",
        detail={"filename": filename, "limit": MAX_SEQUENCE_DEPTH},
    )


def _truncated(filename: str, reason: str) -> InvalidInputError:
    return InvalidInputError(
        f"{filename}: truncated or damaged DICOM file: {reason}",
        code="truncated_dicom",
        detail={"filename": filename},
    )


def _check_sop_class(dataset: pydicom.Dataset, filename: str) -> None:
    sop_class = str(dataset.get("SOPClassUID", "") or "")
    if not sop_class:
        raise _missing(filename, ["SOPClassUID"])
    if sop_class not in SUPPORTED_SOP_CLASSES:
        raise UnsupportedMediaError(
            f"{filename}: SOP class {UID(sop_class).name} is not an image type MedVision accepts",
            code="unsupported_sop_class",
            detail={"filename": filename, "sop_class_uid": sop_class},
        )


def _check_required_attributes(dataset: pydicom.Dataset, filename: str) -> None:
    missing = [
        keyword
        for keyword in _REQUIRED_ATTRIBUTES
        if keyword not in dataset or dataset[keyword].value in (None, "", b"")
    ]
    if missing:
        raise _missing(filename, missing)


def _missing(filename: str, attributes: list[str]) -> InvalidInputError:
    return InvalidInputError(
        f"{filename}: required DICOM attribute(s) missing: {', '.join(attributes)}",
        code="missing_attribute",
        detail={"filename": filename, "attributes": attributes},
    )


def _positive_int(dataset: pydicom.Dataset, keyword: str, filename: str, default: int) -> int:
    value: Any = dataset.get(keyword, default)
    if value in (None, ""):
        value = default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise InvalidInputError(
            f"{filename}: {keyword} must be a positive integer, got {value!r}",
            code="invalid_attribute",
            detail={"filename": filename, "attribute": keyword},
        )
    return number


def _check_image_size(dataset: pydicom.Dataset, filename: str, limits: UploadLimits) -> int:
    """Enforce the header limits; returns the number of frames."""
    rows = _positive_int(dataset, "Rows", filename, 0)
    columns = _positive_int(dataset, "Columns", filename, 0)
    bits_allocated = _positive_int(dataset, "BitsAllocated", filename, 0)
    if bits_allocated not in _VALID_BITS_ALLOCATED:
        raise InvalidInputError(
            f"{filename}: BitsAllocated {bits_allocated} is not 1, 8, 16, 32 or 64",
            code="invalid_attribute",
            detail={"filename": filename, "attribute": "BitsAllocated"},
        )
    if (
        rows > limits.max_image_dimension
        or columns > limits.max_image_dimension
        or rows * columns > limits.max_image_pixels
    ):
        raise PayloadTooLargeError(
            f"{filename}: image is {rows}x{columns}; the limits are "
            f"{limits.max_image_dimension} per side and {limits.max_image_pixels} pixels",
            code="image_too_large",
            detail={"filename": filename, "rows": rows, "columns": columns},
        )
    frames = _positive_int(dataset, "NumberOfFrames", filename, 1)
    if frames > limits.max_frames:
        raise PayloadTooLargeError(
            f"{filename}: {frames} frames; the limit is {limits.max_frames}",
            code="too_many_frames",
            detail={"filename": filename, "frames": frames, "limit": limits.max_frames},
        )
    return frames


def _transfer_syntax(dataset: pydicom.Dataset, filename: str) -> UID:
    """The data set's transfer syntax, checked to have an installed pixel decoder."""
    file_meta = dataset.file_meta
    if "TransferSyntaxUID" not in file_meta:
        file_meta.TransferSyntaxUID = _syntax_read_with(dataset)
    transfer_syntax = UID(file_meta.TransferSyntaxUID)
    try:
        available = get_decoder(transfer_syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise UnsupportedMediaError(
            f"{filename}: transfer syntax {transfer_syntax.name} cannot be decoded here",
            code="unsupported_transfer_syntax",
            detail={"filename": filename, "transfer_syntax_uid": str(transfer_syntax)},
        )
    return transfer_syntax


def _syntax_read_with(dataset: pydicom.Dataset) -> UID:
    """The uncompressed transfer syntax pydicom inferred for a data set without file meta."""
    if dataset.original_encoding == (True, True):
        return ImplicitVRLittleEndian
    if dataset.original_encoding == (False, False):
        return ExplicitVRBigEndian
    return ExplicitVRLittleEndian


def _check_native_pixel_length(dataset: pydicom.Dataset, filename: str, frames: int) -> None:
    keyword = next(keyword for keyword in _PIXEL_DATA_KEYWORDS if keyword in dataset)
    samples = _positive_int(dataset, "SamplesPerPixel", filename, 1)
    bits_allocated = int(dataset.BitsAllocated)
    expected_bits = int(dataset.Rows) * int(dataset.Columns) * samples * frames * bits_allocated
    expected = (expected_bits + 7) // 8
    if dataset.get("PhotometricInterpretation") == "YBR_FULL_422":
        expected = expected // 3 * 2
    actual = len(dataset[keyword].value)
    if actual < expected:
        raise _truncated(filename, f"{keyword} holds {actual} bytes, the header needs {expected}")


def _decode_first_frame(dataset: pydicom.Dataset, filename: str) -> None:
    """Decode frame 0 once and discard it; nothing is cached on or written to ``dataset``.

    ``view_only``: native pixel data is validated and viewed in place rather than copied
    into a writeable array nobody writes to (an 8 MiB copy per 2048² radiograph); the checks
    and every decoder step that can fail are the same. ``correct_unused_bits=False``: the
    bits above Bits Stored are not masked in an array nobody reads (masking needs a copy,
    and pydicom logs a warning when it cannot give the view).
    """
    try:
        pixel_array(dataset, index=0, view_only=True, correct_unused_bits=False)
    except Exception as exc:  # decoder plugins raise arbitrary exception types
        raise InvalidInputError(
            f"{filename}: the pixel data could not be decoded: {exc}",
            code="pixel_decode_failed",
            detail={"filename": filename},
        ) from exc
