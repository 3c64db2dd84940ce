"""QIDO-RS query strings (PS3.18 8.3.4): matching keys, ``limit``, ``offset``,
``includefield``, ``fuzzymatching``; and the attributes each search level matches on and
returns by default.

Matching runs on what the database records of each stored, de-identified study. Attributes
that de-identification empties (:data:`EMPTIED`) match only a universal value. Other valid
attributes are ignored and reported (``Warning: 299``); names that are neither a keyword nor
a tag are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from control.domain.dicomweb.json_model import resolve_tag
from control.errors import InvalidInputError

__all__ = [
    "DEFAULTS",
    "DEFAULT_LIMIT",
    "EMPTIED",
    "MATCHING",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MODALITIES",
    "MODALITY",
    "PATIENT_ID",
    "PATIENT_NAME",
    "SERIES_UID",
    "SOP_CLASS",
    "SOP_UID",
    "STUDY_DATE",
    "STUDY_UID",
    "Level",
    "QidoQuery",
    "parse_query",
]

Level = Literal["study", "series", "instance"]

#: Results per page when the request names no ``limit`` (a ``Warning`` says when more exist).
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000


def _tag(keyword: str) -> int:
    return int(resolve_tag(keyword))


STUDY_UID, SERIES_UID, SOP_UID = (
    _tag("StudyInstanceUID"),
    _tag("SeriesInstanceUID"),
    _tag("SOPInstanceUID"),
)
STUDY_DATE, MODALITIES, MODALITY = _tag("StudyDate"), _tag("ModalitiesInStudy"), _tag("Modality")
PATIENT_ID, PATIENT_NAME, SOP_CLASS = (
    _tag("PatientID"),
    _tag("PatientName"),
    _tag("SOPClassUID"),
)
#: Emptied in every stored header by de-identification (PS3.15 E.1 Basic Profile, "Z").
EMPTIED = frozenset(
    _tag(k)
    for k in (
        "AccessionNumber",
        "StudyID",
        "StudyTime",
        "ReferringPhysicianName",
        "PatientBirthDate",
        "PatientSex",
    )
)
MATCHING: dict[str, frozenset[int]] = {
    "study": frozenset({STUDY_UID, STUDY_DATE, MODALITIES, PATIENT_ID, PATIENT_NAME}) | EMPTIED,
    "series": frozenset({SERIES_UID, MODALITY}),
    "instance": frozenset({SOP_UID, SOP_CLASS, SERIES_UID, MODALITY}),
}
#: Attributes each level returns by default (PS3.18 Tables 10.6.3-3 to -5, where present).
DEFAULTS: dict[str, frozenset[int]] = {
    "study": frozenset(
        _tag(k)
        for k in (
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "InstanceAvailability",
            "ModalitiesInStudy",
            "ReferringPhysicianName",
            "RetrieveURL",
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyInstanceUID",
            "StudyID",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        )
    ),
    "series": frozenset(
        _tag(k)
        for k in (
            "Modality",
            "SeriesDescription",
            "RetrieveURL",
            "SeriesInstanceUID",
            "SeriesNumber",
            "NumberOfSeriesRelatedInstances",
            "StudyInstanceUID",
        )
    ),
    "instance": frozenset(
        _tag(k)
        for k in (
            "SOPClassUID",
            "SOPInstanceUID",
            "InstanceAvailability",
            "RetrieveURL",
            "InstanceNumber",
            "Rows",
            "Columns",
            "BitsAllocated",
            "NumberOfFrames",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "Modality",
        )
    ),
}
_TRUE_FALSE = frozenset({"true", "false"})


@dataclass(frozen=True)
class QidoQuery:
    """A parsed QIDO-RS query string."""

    matches: dict[int, str] = field(default_factory=dict)
    include: frozenset[int] = frozenset()
    include_all: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    #: No ``limit`` was given: a full page means more may exist (a ``Warning`` says so).
    default_limit: bool = True
    #: Attributes named for matching that this server does not match on (ignored).
    ignored: tuple[str, ...] = ()


def _bounded_int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidInputError(
            f"{name} must be an integer from {low} to {high}",
            code=f"invalid_{name}",
            detail={name: value[:32]},
        )
    return number


def parse_query(items: Iterable[tuple[str, str]], level: Level) -> QidoQuery:
    """The query of a search at ``level`` from its (name, value) parameters.

    ``limit`` (1 to :data:`MAX_LIMIT`), ``offset`` (0 to :data:`MAX_OFFSET`),
    ``includefield`` (keywords or tags, comma-separated or repeated, or ``all``),
    ``fuzzymatching`` (``true``/``false``, ignored: matching is literal) and attribute
    matches by keyword or tag. 400 with ``invalid_limit``, ``invalid_offset``,
    ``invalid_fuzzymatching``, ``unknown_attribute`` or ``duplicate_attribute``.
    """
    matches: dict[int, str] = {}
    include: set[int] = set()
    include_all = False
    limit, offset, default_limit = DEFAULT_LIMIT, 0, True
    ignored: list[str] = []
    for name, value in items:
        lowered = name.lower()
        if lowered == "limit":
            limit, default_limit = _bounded_int("limit", value, 1, MAX_LIMIT), False
        elif lowered == "offset":
            offset = _bounded_int("offset", value, 0, MAX_OFFSET)
        elif lowered == "includefield":
            for item in (part.strip() for part in value.split(",")):
                if item.lower() == "all":
                    include_all = True
                elif item:
                    include.add(resolve_tag(item))
        elif lowered == "fuzzymatching":
            if value.lower() not in _TRUE_FALSE:
                raise InvalidInputError(
                    "fuzzymatching must be true or false", code="invalid_fuzzymatching"
                )
        else:
            tag = resolve_tag(name)
            if tag not in MATCHING[level]:
                ignored.append(name)
            elif tag in matches:
                raise InvalidInputError(
                    f"{name} is given twice; list values separated by commas instead",
                    code="duplicate_attribute",
                    detail={"attribute": name},
                )
            else:
                matches[tag] = value
    return QidoQuery(
        matches, frozenset(include), include_all, limit, offset, default_limit, tuple(ignored)
    )
