"""Response shape of a case's result exports (what was sent where, with status)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from control.db.models import ExportStatus, ResultExport


class ExportOut(msgspec.Struct):
    """One result object for one destination. ``sop_instance_uid`` is the object's own UID
    (MedVision made it; the PACS files it under the same UID); ``last_error`` is the stable
    code of the last failed attempt, or why the object is skipped."""

    id: uuid.UUID
    destination: str
    kind: str
    object: str
    finding_id: uuid.UUID | None
    sop_instance_uid: str
    status: ExportStatus
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, export: ResultExport) -> ExportOut:
        return cls(
            id=export.id,
            destination=export.destination,
            kind=export.kind,
            object=export.object_name,
            finding_id=export.finding_id,
            sop_instance_uid=export.sop_instance_uid,
            status=export.status,
            attempts=export.attempts,
            last_error=export.error_code,
            sent_at=export.sent_at,
            created_at=export.created_at,
        )
