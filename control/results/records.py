"""The encrypted re-identification record: what it takes to file a result under the patient.

At ingest, de-identification (:func:`control.dicom.deid.deidentify`) reports the original
values of the identifying header subset (:data:`~control.dicom.deid.REIDENTIFICATION_KEYWORDS`:
patient ID and name, birth date, sex, Study Instance UID, accession number, study date and
time, Study ID, referring physician) and every original UID it replaced. They are stored
only encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under the ``reid`` key
(``MEDVISION_REID_KEY``, else derived from the secret key; never in the database or the
object store): the header subset per study in ``study_links.identity_encrypted``, the
pseudonym -> original UID map per instance in ``instance_links``.

:func:`load_record` is the one reader. The sending code calls it for one send, and every
call is audited (``study.reid_record_read``); the record never reaches a log, a response
or MedVision's storage in plaintext. NIfTI studies have no record (nothing to re-identify
with), so their results cannot go to a PACS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Instance, InstanceLink, Series, Study, StudyLink
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.errors import StorageIntegrityError

__all__ = ["RecordCipher", "ReidRecord", "load_record"]


class RecordCipher:
    """Fernet encryption of re-identification records under the ``reid`` key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(key[:32].ljust(32, b"\0")))

    def seal(self, values: Mapping[str, str]) -> bytes:
        """The ciphertext of ``values`` (a flat text mapping)."""
        return self._fernet.encrypt(json.dumps(dict(values), sort_keys=True).encode())

    def open(self, token: bytes) -> dict[str, str]:
        """The mapping sealed in ``token``; StorageIntegrityError ``reid_record_undecryptable``
        when the key is wrong or the ciphertext was altered."""
        try:
            values = json.loads(self._fernet.decrypt(token))
        except (InvalidToken, ValueError):
            raise StorageIntegrityError(
                "a re-identification record cannot be decrypted with the configured key",
                code="reid_record_undecryptable",
            ) from None
        return {str(name): str(value) for name, value in values.items()}


@dataclass(frozen=True)
class ReidRecord:
    """A study's re-identification record, decrypted (PHI: keep it in memory only).

    ``identifying`` maps DICOM keywords to the original values; ``uid_map`` maps every
    pseudonymous UID of the study's stored instances to its original.
    """

    identifying: Mapping[str, str] = field(repr=False)
    uid_map: Mapping[str, str] = field(repr=False)

    def __repr__(self) -> str:  # never print the values, whoever logs the object
        return f"ReidRecord(<{len(self.identifying)} attributes, {len(self.uid_map)} UIDs>)"


async def load_record(
    session: AsyncSession,
    study: Study,
    cipher: RecordCipher,
    actor: Actor,
    details: Mapping[str, object],
) -> ReidRecord | None:
    """Decrypt ``study``'s record (None when it has none); the read is audited.

    The audit entry ``study.reid_record_read`` (in the caller's transaction) carries
    ``details`` — say why it was read (e.g. the destination and export id); never PHI.
    """
    link = await session.scalar(select(StudyLink).where(StudyLink.study_id == study.id))
    if link is None or link.identity_encrypted is None:
        return None
    identifying = cipher.open(link.identity_encrypted)
    tokens = await session.scalars(
        select(InstanceLink.uids_encrypted)
        .join(Instance, Instance.id == InstanceLink.instance_id)
        .join(Series, Series.id == Instance.series_id)
        .where(Series.study_id == study.id)
    )
    uid_map: dict[str, str] = {}
    for token in tokens:
        uid_map.update(cipher.open(token))
    await chain.append(
        session,
        "study.reid_record_read",
        actor,
        target_type="study",
        target_id=str(study.id),
        details=dict(details),
    )
    return ReidRecord(identifying, uid_map)
