"""STOW-RS (PS3.18 10.5): store the parts of a request, answer per instance.

Every part goes through the same ingest as an HTTP upload or a C-STORE (validation and
de-identification as each part arrives, then storage and routing of the request's parts in
one :meth:`~control.domain.studies.service.IngestService.ingest_prepared`); each part
succeeds or fails on its own. The answer names what was stored by its stored, pseudonymous
UIDs (ReferencedSOPSequence, with a RetrieveURL) and what failed by the UIDs the part
carried, read best-effort (FailedSOPSequence, with a FailureReason).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO

import pydicom
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.config import Settings
from control.db.models import Instance, Series, Study
from control.dicom.deid import pseudonymous_uid
from control.dicom.reader import UploadLimits
from control.domain.audit.chain import Actor
from control.domain.dicomweb.json_model import Attributes, attribute
from control.domain.dicomweb.media import DICOM
from control.domain.dicomweb.multipart import Part
from control.domain.studies.prepare import PreparedStudy, RejectedFile, merge_each, prepare_file
from control.domain.studies.service import IngestResult, IngestService
from control.errors import (
    ConflictError,
    InvalidInputError,
    MedVisionError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
from control.observability.tracing import ingest_span
from control.storage import ObjectStore

__all__ = [
    "ExaminedPart",
    "FailureReason",
    "StowOutcome",
    "failure_reason",
    "part_examiner",
    "store_parts",
]


class FailureReason:
    """FailureReason (0008,1197) values (PS3.18 Table 10.5.3-2, PS3.4 Annex B.2.3)."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


_REASON_BY_CODE = {
    "not_dicom": FailureReason.CANNOT_UNDERSTAND,
    "truncated_dicom": FailureReason.CANNOT_UNDERSTAND,
    "unsupported_part_type": FailureReason.CANNOT_UNDERSTAND,
    "pixel_decode_failed": FailureReason.CANNOT_UNDERSTAND,
    "unsupported_sop_class": FailureReason.SOP_CLASS_NOT_SUPPORTED,
    "unsupported_transfer_syntax": FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
    "instance_conflict": FailureReason.DUPLICATE_SOP_INSTANCE,
    "duplicate_instance_uid": FailureReason.DUPLICATE_SOP_INSTANCE,
    "study_mismatch": FailureReason.DATA_SET_DOES_NOT_MATCH,
}


def failure_reason(error: MedVisionError) -> int:
    """The FailureReason of a part that failed with ``error``.

    Unreadable files ``0xC000``; an unsupported SOP class ``0x0122`` or transfer syntax
    ``0xC122``; size limits ``0xA700``; a UID already stored with other content ``0x0111``;
    an instance of another study than the request's, or one failing validation (missing or
    invalid attributes), ``0xA900``; anything else ``0x0110``.
    """
    if error.code in _REASON_BY_CODE:
        return _REASON_BY_CODE[error.code]
    if isinstance(error, PayloadTooLargeError):
        return FailureReason.OUT_OF_RESOURCES
    if isinstance(error, UnsupportedMediaError):
        return FailureReason.CANNOT_UNDERSTAND
    if isinstance(error, ConflictError):
        return FailureReason.DUPLICATE_SOP_INSTANCE
    if isinstance(error, InvalidInputError):
        return FailureReason.DATA_SET_DOES_NOT_MATCH
    return FailureReason.PROCESSING_FAILURE


@dataclass(frozen=True)
class PartIdentity:
    """The UIDs a part carries, as far as its header could be read (empty when not)."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""


def read_identity(content: bytes) -> PartIdentity:
    """The part's SOP Class, SOP Instance and Study Instance UIDs, best effort (blocking)."""
    try:
        ds = pydicom.dcmread(BytesIO(content), stop_before_pixels=True)
        return PartIdentity(
            str(ds.get("SOPClassUID", "") or ""),
            str(ds.get("SOPInstanceUID", "") or ""),
            str(ds.get("StudyInstanceUID", "") or ""),
        )
    except Exception:  # pydicom raises many types for a broken header: nothing known
        return PartIdentity()


@dataclass
class StowOutcome:
    """What a STOW-RS request did: the response dataset and its HTTP status."""

    response: Attributes
    stored: int
    failed: int
    ingest: IngestResult = field(default_factory=lambda: IngestResult([]))

    @property
    def status_code(self) -> int:
        """200 when every instance was stored, 409 when none was, 202 otherwise."""
        if not self.failed:
            return 200
        return 409 if not self.stored else 202


def _failed_item(identity: PartIdentity, reason: int) -> Attributes:
    return dict(
        [
            attribute("ReferencedSOPClassUID", identity.sop_class_uid or None),
            attribute("ReferencedSOPInstanceUID", identity.sop_instance_uid or None),
            attribute("FailureReason", reason),
        ]
    )


def _study_matches(identity: PartIdentity, target: str, key: bytes) -> bool:
    """Whether the part belongs to the request's study: its UID, or its stored pseudonym."""
    if not identity.study_uid:
        return True  # unreadable: ingest rejects it with the real reason
    return target in (identity.study_uid, pseudonymous_uid(identity.study_uid, key))


@dataclass(frozen=True)
class ExaminedPart:
    """A part as read, before storage: its UIDs and either the FailureReason it was refused
    with (``failure``) or what preparing it for ingest gave (``prepared``)."""

    identity: PartIdentity
    failure: int | None = None
    prepared: list[PreparedStudy] | RejectedFile | None = None


def part_examiner(
    settings: Settings, target_study: str | None
) -> Callable[[int, Part], ExaminedPart]:
    """The blocking check of each part, run while the rest of the body arrives (see
    :func:`~control.domain.dicomweb.multipart.read_parts`).

    A part whose Content-Type is not ``application/dicom`` fails with ``0xC000``; with
    ``target_study`` (the request path's study), a part of another study fails with
    ``0xA900``; every other part is validated and de-identified as ``part-<n>``
    (:func:`~control.domain.studies.prepare.prepare_file`), nothing written yet.
    """
    key = settings.key("deid")
    limits = UploadLimits.from_settings(settings)

    def examine(index: int, part: Part) -> ExaminedPart:
        identity = read_identity(part.content)
        if part.content_type not in (None, DICOM):
            return ExaminedPart(identity, FailureReason.CANNOT_UNDERSTAND)
        if target_study is not None and not _study_matches(identity, target_study, key):
            return ExaminedPart(identity, FailureReason.DATA_SET_DOES_NOT_MATCH)
        prepared = prepare_file(_name(index), part.content, limits, key)
        return ExaminedPart(identity, prepared=prepared)

    return examine


def _name(index: int) -> str:
    return f"part-{index + 1}"


async def store_parts(
    session: AsyncSession,
    store: ObjectStore,
    settings: Settings,
    examined: list[ExaminedPart],
    actor: Actor,
    base_url: str,
    target_study: str | None = None,
) -> StowOutcome:
    """Store the prepared parts of a request in one ingest and build the STOW-RS response
    (see module docstring); ``examined`` comes from :func:`part_examiner`, in part order."""
    failed = [_failed_item(part.identity, part.failure) for part in examined if part.failure]
    to_store = {
        _name(index): (part.identity, part.prepared)
        for index, part in enumerate(examined)
        if part.prepared is not None
    }
    result, rejected = IngestResult([]), list[RejectedFile]()
    if to_store:
        service = IngestService(session, store, settings, source="stow")
        with ingest_span(service.source, len(to_store)):  # the trace the queued jobs continue
            prepared, rejected = merge_each([prepared for _, prepared in to_store.values()])
            result, rejected = await service.ingest_prepared(prepared, rejected, actor)
    rejected_names = {item.filename: item.error for item in rejected}
    stored_sources: dict[str, PartIdentity] = {}
    for name, (identity, _) in to_store.items():
        error = rejected_names.get(name)
        if error is not None:
            failed.append(_failed_item(identity, failure_reason(error)))
        else:
            stored_sources[name] = identity
    key = settings.key("deid")
    referenced, missing = await _referenced(session, stored_sources, key, base_url)
    failed.extend(_failed_item(identity, FailureReason.PROCESSING_FAILURE) for identity in missing)
    response: Attributes = {}
    studies = {study_uid for study_uid, _ in referenced}
    if target_study is not None or len(studies) == 1:
        study_uid = target_study if target_study is not None else next(iter(studies))
        response.update([attribute("RetrieveURL", f"{base_url}/studies/{study_uid}")])
    if failed:
        response.update([_sequence("FailedSOPSequence", failed)])
    if referenced:
        response.update([_sequence("ReferencedSOPSequence", [item for _, item in referenced])])
    return StowOutcome(dict(sorted(response.items())), len(referenced), len(failed), result)


def _sequence(keyword: str, items: list[Attributes]) -> tuple[str, dict[str, object]]:
    name, _ = attribute(keyword)
    return name, {"vr": "SQ", "Value": items}


async def _referenced(
    session: AsyncSession,
    sources: dict[str, PartIdentity],
    key: bytes,
    base_url: str,
) -> tuple[list[tuple[str, Attributes]], list[PartIdentity]]:
    """(study UID, ReferencedSOPSequence item) of each stored part, by its stored UIDs, in
    request order; and the identities of stored parts whose instance cannot be found.

    A stored instance's UID is the pseudonym of the part's (or, for UIDs de-identification
    keeps, the part's own): both are looked up, the pseudonym preferred.
    """
    wanted: dict[str, tuple[str, bool]] = {}
    for name, identity in sources.items():
        if identity.sop_instance_uid:
            wanted.setdefault(identity.sop_instance_uid, (name, False))
            wanted[pseudonymous_uid(identity.sop_instance_uid, key)] = (name, True)
    rows = await session.execute(
        select(Instance, Series.series_uid, Study.study_uid)
        .join(Series, Instance.series_id == Series.id)
        .join(Study, Series.study_id == Study.id)
        .where(Instance.sop_instance_uid.in_(list(wanted)))
    )
    found: dict[str, tuple[bool, str, Attributes]] = {}
    for instance, series_uid, study_uid in rows.tuples():
        name, is_pseudonym = wanted[instance.sop_instance_uid]
        if name in found and found[name][0]:
            continue
        url = (
            f"{base_url}/studies/{study_uid}/series/{series_uid}"
            f"/instances/{instance.sop_instance_uid}"
        )
        item: Attributes = dict(
            [
                attribute("ReferencedSOPClassUID", instance.sop_class_uid),
                attribute("ReferencedSOPInstanceUID", instance.sop_instance_uid),
                attribute("RetrieveURL", url),
            ]
        )
        found[name] = (is_pseudonym, study_uid, item)
    referenced = [(found[name][1], found[name][2]) for name in sources if name in found]
    missing = [identity for name, identity in sources.items() if name not in found]
    return referenced, missing
