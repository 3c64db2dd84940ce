"""Media types of DICOMweb requests and responses, and the content negotiation of PS3.18 8.7.

Supported: STOW-RS bodies ``multipart/related; type="application/dicom"``; instances as
``multipart/related; type="application/dicom"`` in the stored transfer syntax
(``transfer-syntax=*`` or none given) or Explicit VR Little Endian (``1.2.840.10008.1.2.1``);
frames as ``multipart/related; type="application/octet-stream"`` (uncompressed); metadata and
search results as ``application/dicom+json``; rendered images as ``image/jpeg`` (the default)
or ``image/png``. Anything else is refused with ``406 not_acceptable`` (or ``415`` for a
request body), naming what is offered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.uid import ExplicitVRLittleEndian

from control.errors import InvalidInputError, MedVisionError, UnsupportedMediaError

__all__ = [
    "DICOM",
    "DICOM_JSON",
    "JPEG",
    "OCTET_STREAM",
    "PNG",
    "MediaRange",
    "NotAcceptableError",
    "multipart_type",
    "negotiate_frames",
    "negotiate_instances",
    "negotiate_metadata",
    "negotiate_rendered",
    "parse_accept",
    "stow_boundary",
]

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
MULTIPART_RELATED = "multipart/related"
JPEG = "image/jpeg"
PNG = "image/png"
#: ``transfer-syntax`` values meaning "as stored".
ANY_TRANSFER_SYNTAX = "*"
_WILDCARDS = frozenset({"*/*", "multipart/*"})
#: Longest boundary accepted. RFC 2046 allows 70 characters, but Orthanc's DICOMweb plugin
#: (a PACS this server must accept) sends 73: real clients over the letter of the RFC.
MAX_BOUNDARY = 200


class NotAcceptableError(MedVisionError):
    """No representation the server offers matches the request's Accept header."""

    status_code = 406
    code = "not_acceptable"


@dataclass(frozen=True)
class MediaRange:
    """One media type (or range) with its parameters (names lower-cased, values unquoted)."""

    type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def quality(self) -> float:
        """The ``q`` weight (1 when absent or unreadable)."""
        try:
            return float(self.params.get("q", "1"))
        except ValueError:
            return 1.0


def _split(value: str, separator: str) -> list[str]:
    """``value`` split on ``separator`` outside double quotes."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def parse_media_type(value: str) -> MediaRange:
    """``type/subtype; name=value; ...`` as a :class:`MediaRange` (type lower-cased)."""
    first, *rest = _split(value, ";")
    params: dict[str, str] = {}
    for item in rest:
        name, equals, raw = item.partition("=")
        if equals and name.strip():
            params[name.strip().lower()] = raw.strip().strip('"')
    return MediaRange(first.strip().lower(), params)


def parse_accept(header: str | None) -> list[MediaRange]:
    """The Accept header's media ranges, best first (``q=0`` dropped); ``*/*`` when absent."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(item) for item in _split(header, ",") if item.strip()]
    ranges = [item for item in ranges if item.quality > 0]
    return sorted(ranges, key=lambda item: -item.quality)


def stow_boundary(content_type: str | None) -> str:
    """The boundary of a STOW-RS request body, after checking its Content-Type.

    The body must be ``multipart/related`` whose ``type`` is ``application/dicom`` (or is left
    out): ``415 unsupported_media_type`` otherwise (metadata + bulk data requests included).
    Without a usable boundary: ``400 multipart_boundary_missing``.
    """
    media = parse_media_type(content_type or "")
    root = media.params.get("type", DICOM).lower()
    if media.type != MULTIPART_RELATED or root != DICOM:
        raise UnsupportedMediaError(
            'STOW-RS accepts only multipart/related; type="application/dicom"',
            code="unsupported_media_type",
            detail={"content_type": (content_type or "")[:200]},
        )
    boundary = media.params.get("boundary", "")
    if not 1 <= len(boundary) <= MAX_BOUNDARY or any(
        ord(char) < 32 or ord(char) > 126 for char in boundary
    ):
        raise InvalidInputError(
            f"the Content-Type has no valid boundary parameter (1 to {MAX_BOUNDARY} printable "
            "characters)",
            code="multipart_boundary_missing",
        )
    return boundary


def multipart_type(boundary: str, part_type: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type of a ``multipart/related`` response whose parts are ``part_type``."""
    value = f'{MULTIPART_RELATED}; type="{part_type}"; boundary={boundary}'
    return value + (f"; transfer-syntax={transfer_syntax}" if transfer_syntax else "")


def _not_acceptable(offered: str) -> NotAcceptableError:
    return NotAcceptableError(
        f"no acceptable representation; this resource is offered as {offered}",
        detail={"offered": offered},
    )


def negotiate_instances(accept: str | None) -> str | None:
    """The transfer syntax instances are sent in: None for "as stored", else Explicit VR
    Little Endian. ``406 not_acceptable`` when the Accept header allows neither."""
    for media in parse_accept(accept):
        if media.type in _WILDCARDS and "type" not in media.params:
            return None
        part = media.params.get("type", "").lower()
        if media.type == MULTIPART_RELATED and part in (DICOM, "application/*", "*/*"):
            syntax = media.params.get("transfer-syntax", ANY_TRANSFER_SYNTAX)
            if syntax == ANY_TRANSFER_SYNTAX:
                return None
            if syntax == ExplicitVRLittleEndian:
                return str(ExplicitVRLittleEndian)
    raise _not_acceptable(
        'multipart/related; type="application/dicom" with transfer-syntax=* (as stored) '
        f"or {ExplicitVRLittleEndian}"
    )


def negotiate_frames(accept: str | None) -> None:
    """Check that uncompressed frames (``application/octet-stream`` parts) are acceptable."""
    for media in parse_accept(accept):
        if media.type in _WILDCARDS and "type" not in media.params:
            return
        part = media.params.get("type", "").lower()
        syntax = media.params.get("transfer-syntax", ANY_TRANSFER_SYNTAX)
        if (
            media.type == MULTIPART_RELATED
            and part in (OCTET_STREAM, "application/*", "*/*")
            and syntax in (ANY_TRANSFER_SYNTAX, ExplicitVRLittleEndian)
        ):
            return
    raise _not_acceptable('multipart/related; type="application/octet-stream" (uncompressed)')


def negotiate_metadata(accept: str | None) -> None:
    """Check that DICOM JSON is acceptable (``application/dicom+json``, ``application/json``)."""
    for media in parse_accept(accept):
        if media.type in (DICOM_JSON, "application/json", "application/*", "*/*"):
            return
    raise _not_acceptable(DICOM_JSON)


def negotiate_rendered(accept: str | None) -> str:
    """``image/jpeg`` or ``image/png``, whichever the Accept header prefers (JPEG for any)."""
    for media in parse_accept(accept):
        if media.type in (JPEG, PNG):
            return media.type
        if media.type in ("image/*", "*/*"):
            return JPEG
    raise _not_acceptable(f"{JPEG} or {PNG}")
