"""Ingest: de-identified studies become stored objects, database rows and worklist cases."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from io import BytesIO

import anyio.to_thread
import numpy as np
import pydicom
from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, lazyload

from control.config import Settings
from control.db.models import (
    Case,
    CaseStatus,
    Instance,
    InstanceLink,
    Role,
    Series,
    Study,
    StudyLink,
)
from control.dicom.reader import UploadLimits
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import visible_to
from control.domain.jobs.scheduling import schedule_case
from control.domain.studies.links import LinkCipher
from control.domain.studies.prepare import (
    PreparedInstance,
    PreparedStudy,
    RejectedFile,
    prepare_each,
    prepare_upload,
)
from control.errors import ConflictError, MedVisionError, NotFoundError, PermissionDeniedError
from control.observability.metrics import record_ingest
from control.observability.tracing import ingest_span
from control.results.records import RecordCipher
from control.storage import NewObject, ObjectStore, StoredObject, instance_key

BURNED_IN_FLAG = "burned_in_annotation"
AFTER_SIGN_OFF_FLAG = "images_after_sign_off"
ADDENDUM_FLAG = "addendum"


@dataclass
class IngestedStudy:
    """What one upload did to one study."""

    study_id: uuid.UUID
    case_id: uuid.UUID
    study_uid: str
    created: bool
    new_instances: int
    existing_instances: int
    flags: list[str] = field(default_factory=list)
    pipeline: str | None = None
    status: str = "received"
    #: Whether this upload queued an inference job for the case.
    inference_queued: bool = False


@dataclass
class IngestResult:
    studies: list[IngestedStudy]

    @property
    def created_anything(self) -> bool:
        return any(study.new_instances for study in self.studies)

    @property
    def queued_anything(self) -> bool:
        return any(study.inference_queued for study in self.studies)


class IngestService:
    """Stores prepared studies atomically: all of an upload, or nothing of it."""

    def __init__(
        self, session: AsyncSession, store: ObjectStore, settings: Settings, *, source: str = "http"
    ) -> None:
        self.session = session
        #: How the files arrived (http, dimse, stow): the ``source`` of the ingest metrics.
        self.source = source
        self.store = store
        self.settings = settings
        self.cipher = LinkCipher(settings.key("link"))
        self.records = RecordCipher(settings.key("reid"))
        #: Re-sent instances accepted as re-encodings during the current store attempt.
        self.reencoded: list[dict[str, str]] = []
        #: Objects of the current store attempt (and their file names), by key, written
        #: together before its commit.
        self.pending: dict[str, tuple[NewObject, str]] = {}
        #: Re-identification records of the current attempt's new instances, inserted after
        #: their instances.
        self.links: list[InstanceLink] = []

    async def ingest(
        self,
        files: list[tuple[str, bytes]],
        actor: Actor,
        race_ethnicity: str | None = None,
        uploader: AuthUser | None = None,
    ) -> IngestResult:
        """Validate, de-identify and store ``files``; re-sending stored instances is a no-op.

        ``race_ethnicity`` is recorded only on a study this upload creates. ``uploader`` is
        the API caller: a radiologist may add images only to studies whose case they see.
        """
        with ingest_span(self.source, len(files)):  # the trace the queued jobs continue
            limits = UploadLimits.from_settings(self.settings)
            key = self.settings.key("deid")
            try:
                prepared = await anyio.to_thread.run_sync(prepare_upload, files, limits, key)
                result = await self._store_with_retries(prepared, actor, race_ethnicity, uploader)
            except MedVisionError as exc:  # all or nothing: every file of the upload is rejected
                record_ingest(self.source, None, f"rejected:{exc.code}", len(files))
                raise
            self._count(prepared, result, [])
            return result

    async def ingest_each(
        self, files: list[tuple[str, bytes]], actor: Actor
    ) -> tuple[IngestResult, list[RejectedFile]]:
        """Ingest a batch of DICOM files in which each file succeeds or fails on its own.

        The DICOM network paths (C-STORE, STOW-RS) answer per instance: a file that fails
        validation, de-identification or storage (e.g. ``instance_conflict``) is returned in
        the rejected list with its error, and everything else is stored in one transaction.
        File names must be unique within the batch.
        """
        with ingest_span(self.source, len(files)):  # the trace the queued jobs continue
            limits = UploadLimits.from_settings(self.settings)
            key = self.settings.key("deid")
            prepared, rejected = await anyio.to_thread.run_sync(prepare_each, files, limits, key)
            return await self.ingest_prepared(prepared, rejected, actor)

    async def ingest_prepared(
        self, prepared: list[PreparedStudy], rejected: list[RejectedFile], actor: Actor
    ) -> tuple[IngestResult, list[RejectedFile]]:
        """The storage half of :meth:`ingest_each`, for files already prepared (and merged)
        by :func:`~control.domain.studies.prepare.merge_each`; ``rejected`` is extended with
        the files that fail while being stored."""
        while any(study.instances for study in prepared):
            try:
                result = await self._store_with_retries(prepared, actor, None, None)
                self._count(prepared, result, rejected)
                return result, rejected
            except MedVisionError as exc:
                # The failed transaction was rolled back; retry without the file it names.
                filename = exc.detail.get("filename")
                if not _drop_file(prepared, filename):
                    raise
                rejected.append(RejectedFile(str(filename), exc))
        self._count(prepared, IngestResult([]), rejected)
        return IngestResult([]), rejected

    def _count(
        self, prepared: list[PreparedStudy], result: IngestResult, rejected: list[RejectedFile]
    ) -> None:
        """Count the instances stored, already stored and rejected (ingest metrics)."""
        modality = {study.study_uid: study.modality for study in prepared}
        for study in result.studies:
            record_ingest(self.source, modality.get(study.study_uid), "stored", study.new_instances)
            record_ingest(
                self.source, modality.get(study.study_uid), "existing", study.existing_instances
            )
        for file in rejected:
            record_ingest(self.source, None, f"rejected:{file.error.code}")

    async def _store_with_retries(
        self,
        prepared: list[PreparedStudy],
        actor: Actor,
        race_ethnicity: str | None,
        uploader: AuthUser | None,
    ) -> IngestResult:
        for attempt in range(3):
            try:
                return await self._store_all(prepared, actor, race_ethnicity, uploader)
            except IntegrityError:
                # A concurrent upload of the same study won the race (``_store_all`` has
                # rolled back): retry against its rows.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _store_all(
        self,
        prepared: list[PreparedStudy],
        actor: Actor,
        race_ethnicity: str | None,
        uploader: AuthUser | None,
    ) -> IngestResult:
        self.reencoded = []
        self.pending = {}
        self.links = []
        writes: list[asyncio.Future[list[StoredObject]]] = []
        try:
            known = await self._look_up(prepared)
            results = []
            for study in prepared:
                started = len(self.pending)
                results.append(
                    await self._store_study(study, known, actor, race_ethnicity, uploader)
                )
                # The study's objects are written while the next study's rows are built.
                batch = list(self.pending.values())[started:]
                if batch:
                    writes.append(asyncio.ensure_future(self._write(batch)))
            # The request's new rows in one flush (a statement per table, not per study);
            # then the re-identification records (no relationship orders their rows after
            # their instances' rows).
            await self.session.flush()
            self.session.add_all(self.links)
            # Every object durable (each file fsynced, each directory once per study) before
            # the commit that makes rows point at them.
            await asyncio.gather(*writes)
            await self.session.commit()
            return IngestResult(results)
        except BaseException:
            await self.session.rollback()
            await self._remove_unreferenced(await _created_keys(writes))
            raise

    async def _look_up(self, prepared: list[PreparedStudy]) -> _Known:
        """What is stored of the request's studies, instances and series: three queries for
        the whole request (in chunks of :data:`_IN_CHUNK` UIDs)."""
        known = _Known()
        study_uids = [study.study_uid for study in prepared]
        for chunk in _chunks(study_uids):
            # Each study with, in the same query, whether its link row still lacks the
            # re-identification record. Series and instances are not loaded: a study that
            # gains nothing never reads them, and scheduling loads them.
            rows = await self.session.execute(
                select(Study, StudyLink.id)
                .outerjoin(
                    StudyLink,
                    and_(StudyLink.study_id == Study.id, StudyLink.identity_encrypted.is_(None)),
                )
                .where(Study.study_uid.in_(chunk))
                .options(lazyload(Study.series))
            )
            known.studies.update({row[0].study_uid: (row[0], row[1]) for row in rows})
        instance_uids = [i.sop_instance_uid for study in prepared for i in study.instances]
        for chunk in _chunks(instance_uids):
            rows = await self.session.execute(
                select(Instance, InstanceLink.id)
                .outerjoin(InstanceLink, InstanceLink.instance_id == Instance.id)
                .where(Instance.sop_instance_uid.in_(chunk))
            )
            known.instances.update(
                {row[0].sop_instance_uid: (row[0], row[1] is not None) for row in rows}
            )
        series_uids = sorted(
            {
                i.series_uid
                for study in prepared
                for i in study.instances
                if i.sop_instance_uid not in known.instances
            }
        )
        for chunk in _chunks(series_uids):
            found = await self.session.scalars(
                select(Series)
                .where(Series.series_uid.in_(chunk))
                .options(lazyload(Series.instances))
            )
            known.series.update({series.series_uid: series for series in found})
        return known

    async def _write(self, batch: list[tuple[NewObject, str]]) -> list[StoredObject]:
        """Store ``batch`` (objects and their files' names) with one ``put_many``."""
        try:
            return await self.store.put_many([item for item, _ in batch])
        except MedVisionError as exc:  # key_conflict: name the file, as every upload error does
            key = exc.detail.get("key")
            if key in self.pending:
                exc.detail.setdefault("filename", self.pending[key][1])
            raise

    async def _remove_unreferenced(self, keys: list[str]) -> None:
        """Delete objects this upload wrote that no committed row points to."""
        for key in keys:
            referenced = await self.session.scalar(
                select(Instance.id).where(Instance.object_key == key)
            )
            if referenced is None:
                await self.store.delete(key)

    async def _store_study(
        self,
        prepared: PreparedStudy,
        known: _Known,
        actor: Actor,
        race_ethnicity: str | None,
        uploader: AuthUser | None,
    ) -> IngestedStudy:
        found = known.studies.get(prepared.study_uid)
        study = found[0] if found is not None else None
        created = study is None
        if study is None:
            # Ids are chosen here rather than at the flush: the rows of a new study need
            # no round trip before the one flush that inserts them all.
            study = Study(
                id=uuid.uuid4(),
                study_uid=prepared.study_uid,
                pseudo_patient_id=prepared.pseudo_patient_id,
                modality=prepared.modality,
                study_date=prepared.study_date,
                source_format=prepared.source_format,
                age_band=prepared.age_band,
                sex=prepared.sex,
                race_ethnicity=race_ethnicity,
                burned_in_annotation=prepared.burned_in_annotation,
                series=[],
            )
            self.session.add(study)
            self.session.add(
                StudyLink(
                    study_id=study.id,
                    original_study_uid_encrypted=self.cipher.encrypt(prepared.original_study_uid),
                    identity_encrypted=self._sealed_identity(prepared),
                )
            )
        else:
            if found is not None and found[1] is not None:
                await self._complete_record(found[1], prepared)
            # Demographics of a stored study change only through the guarded, audited
            # PATCH .../demographics route: an upload sets them when it creates the study.
            await self._check_may_add_to(study, prepared, uploader)
        case = await self._ensure_case(study, prepared, created)
        new, existing = 0, 0
        for instance in prepared.instances:
            try:
                stored = await self._store_instance(study, instance, created, known)
            except MedVisionError as exc:
                # Every upload error names the offending file (the README's promise).
                exc.detail.setdefault("filename", instance.filename)
                raise
            if stored:
                new += 1
            else:
                existing += 1
        if prepared.burned_in_annotation:
            study.burned_in_annotation = True
        if new and case.status == CaseStatus.SIGNED_OFF:
            case = await self._open_addendum(case, study, new, actor)
        job = None
        if self.reencoded:
            await chain.append(
                self.session,
                "instance.resent_reencoded",
                actor,
                target_type="study",
                target_id=str(study.id),
                details={"instances": self.reencoded[:50], "count": len(self.reencoded)},
            )
            self.reencoded = []
        if new:
            study.modality = _merge_modality(study.modality, prepared.modality)
            case.modality = study.modality
            await chain.append(
                self.session,
                "study.ingested",
                actor,
                target_type="study",
                target_id=str(study.id),
                details={
                    "case_id": str(case.id),
                    "new_instances": new,
                    "existing_instances": existing,
                    "sha256": sorted(i.sha256 for i in prepared.instances),
                    "flags": list(case.flags),
                },
            )
            job = await schedule_case(
                self.session, case, study, self.settings, actor, new_case=created
            )
        return IngestedStudy(
            study_id=study.id,
            case_id=case.id,
            study_uid=study.study_uid,
            created=created,
            new_instances=new,
            existing_instances=existing,
            flags=list(case.flags),
            pipeline=case.pipeline,
            status=case.status.value,
            inference_queued=job is not None,
        )

    async def _open_addendum(self, signed: Case, study: Study, new: int, actor: Actor) -> Case:
        """New images of a signed-off study open an addendum case linked to the signed one.

        The signed report stays as it was (it is final); it gains the
        ``images_after_sign_off`` flag so whoever opens it sees that later images exist,
        and the new case, flagged ``addendum``, goes through inference and onto the worklist
        with the signed case's priority. Both steps are audited. Racing uploads cannot open
        two addenda: ``addendum_of_id`` is unique, and the loser retries against the winner.
        """
        if AFTER_SIGN_OFF_FLAG not in signed.flags:
            signed.flags = [*signed.flags, AFTER_SIGN_OFF_FLAG]
        carried = [flag for flag in signed.flags if flag == BURNED_IN_FLAG]
        addendum = Case(
            study_id=study.id,
            addendum_of_id=signed.id,
            status=CaseStatus.RECEIVED,
            priority=signed.priority,
            priority_rank=signed.priority_rank,
            modality=study.modality,
            flags=[*carried, ADDENDUM_FLAG],
            study=study,
        )
        self.session.add(addendum)
        await self.session.flush()
        await chain.append(
            self.session,
            "case.addendum_opened",
            actor,
            target_type="case",
            target_id=str(addendum.id),
            details={"addendum_of": str(signed.id), "new_instances": new},
        )
        return addendum

    def _sealed_identity(self, prepared: PreparedStudy) -> bytes | None:
        """The study's encrypted re-identification record (None for NIfTI studies)."""
        return self.records.seal(prepared.identifying) if prepared.identifying else None

    async def _complete_record(self, link_id: uuid.UUID, prepared: PreparedStudy) -> None:
        """Give a study stored without a re-identification record (before records existed)
        the one this upload carries; ``link_id`` is its link row that lacks one."""
        if not prepared.identifying:
            return
        link = await self.session.get(StudyLink, link_id)
        if link is not None and link.identity_encrypted is None:
            link.identity_encrypted = self._sealed_identity(prepared)

    def _complete_instance_record(
        self, stored: Instance, linked: bool, instance: PreparedInstance
    ) -> None:
        """Give an instance stored before re-identification records existed the UID map this
        re-sent copy carries (so results that reference it can be re-identified)."""
        if instance.original_uids and not linked:
            self.session.add(
                InstanceLink(
                    instance_id=stored.id, uids_encrypted=self.records.seal(instance.original_uids)
                )
            )

    async def _check_may_add_to(
        self, study: Study, prepared: PreparedStudy, uploader: AuthUser | None
    ) -> None:
        """A radiologist may add images only to a study whose case they may see.

        Otherwise the answer would name another radiologist's case and its status; the
        refusal names neither.
        """
        if uploader is None or uploader.role != Role.RADIOLOGIST:
            return  # visible_to restricts radiologists only: every other role sees every case
        visible = visible_to(select(Case.id).where(Case.study_id == study.id), uploader)
        if await self.session.scalar(visible) is None:
            filename = prepared.instances[0].filename if prepared.instances else ""
            raise PermissionDeniedError(
                f"{filename}: this study belongs to a case you cannot see",
                code="case_not_visible",
                detail={"filename": filename},
            )

    async def _ensure_case(self, study: Study, prepared: PreparedStudy, created: bool) -> Case:
        """The study's current case (its latest addendum, else its original), created if none.

        A study this transaction created has no case yet: no query is needed to know it.
        """
        successor = aliased(Case)
        case = (
            None
            if created
            else await self.session.scalar(
                select(Case)
                .where(
                    Case.study_id == study.id,
                    ~select(successor.id).where(successor.addendum_of_id == Case.id).exists(),
                )
                # The study is in hand: not joined again.
                .options(lazyload(Case.study))
            )
        )
        flags = [BURNED_IN_FLAG] if prepared.burned_in_annotation else []
        if case is None:
            case = Case(
                id=uuid.uuid4(),
                study_id=study.id,
                status=CaseStatus.RECEIVED,
                modality=study.modality,
                flags=flags,
                study=study,
            )
            self.session.add(case)
        elif flags and BURNED_IN_FLAG not in case.flags:
            case.flags = [*case.flags, BURNED_IN_FLAG]
        return case

    def _series(
        self, study: Study, instance: PreparedInstance, created: bool, known: dict[str, Series]
    ) -> Series:
        """The instance's series: stored (``known``, which gains every series this method
        creates), else a new one in ``study``."""
        series = known.get(instance.series_uid)
        if series is None:
            series = Series(
                id=uuid.uuid4(),
                study_id=study.id,
                series_uid=instance.series_uid,
                modality=instance.modality,
                body_part=instance.body_part,
                sequence_type=instance.sequence_type,
                instances=[],
            )
            self.session.add(series)
            if created:  # keeps the new study's series in hand for routing (no reload)
                study.series.append(series)
            known[instance.series_uid] = series
        elif series.study_id != study.id:
            raise ConflictError(
                "a series UID already belongs to another study",
                code="series_study_mismatch",
                detail={"series_uid": instance.series_uid},
            )
        return series

    async def _check_same_content(self, stored: Instance, instance: PreparedInstance) -> None:
        """Accept a re-sent instance whose bytes differ only by encoding; 409 otherwise.

        A PACS may re-send a study in another transfer syntax (RLE, JPEG-lossless, explicit
        little endian): the same SOP Instance UID, the same attributes and identical decoded
        pixels are the same instance. The first stored copy is kept, whatever order the
        encodings arrive in, and the re-send is recorded in the audit log.
        """
        pending = self.pending.get(stored.object_key)
        if pending is not None:  # stored by this request (same UID under two studies)
            stored_payload = pending[0].data
        else:
            stored_payload = await self.store.get(stored.object_key, expected_sha256=stored.sha256)
        same = await anyio.to_thread.run_sync(same_dicom_content, stored_payload, instance.payload)
        if not same:
            raise ConflictError(
                "an instance with this SOP Instance UID is already stored with other content",
                code="instance_conflict",
                detail={"sop_instance_uid": instance.sop_instance_uid},
            )
        self.reencoded.append(
            {
                "sop_instance_uid": instance.sop_instance_uid,
                "kept_sha256": stored.sha256,
                "received_sha256": instance.sha256,
            }
        )

    async def _store_instance(
        self,
        study: Study,
        instance: PreparedInstance,
        created: bool,
        known: _Known,
    ) -> bool:
        """Store one instance; False when an identical copy is already stored.

        ``known`` (what the request found stored) gains the rows this method creates;
        ``created``: ``study`` was created by this transaction, whose series and instances
        are then kept in hand for routing.
        """
        found = known.instances.get(instance.sop_instance_uid)
        if found is not None:
            stored, linked = found
            if stored.sha256 != instance.sha256:
                await self._check_same_content(stored, instance)
            self._complete_instance_record(stored, linked, instance)
            return False
        series = self._series(study, instance, created, known.series)
        key = instance_key(
            study.study_uid, series.series_uid, instance.sop_instance_uid, instance.suffix
        )
        content_type = "application/dicom" if instance.suffix == "dcm" else "application/gzip"
        self.pending[key] = (
            NewObject(key, instance.payload, content_type, instance.sha256),
            instance.filename,
        )
        row = Instance(
            id=uuid.uuid4(),
            series_id=series.id,
            sop_instance_uid=instance.sop_instance_uid,
            sop_class_uid=instance.sop_class_uid,
            object_key=key,
            sha256=instance.sha256,
            size_bytes=len(instance.payload),
            rows=instance.rows,
            columns=instance.columns,
            frames=instance.frames,
            photometric_interpretation=instance.photometric_interpretation,
            burned_in_annotation=instance.burned_in_annotation,
        )
        self.session.add(row)
        if created:
            series.instances.append(row)
        if instance.original_uids:
            self.links.append(
                InstanceLink(
                    instance_id=row.id, uids_encrypted=self.records.seal(instance.original_uids)
                )
            )
        known.instances[instance.sop_instance_uid] = (row, bool(instance.original_uids))
        return True


#: UIDs per ``IN (...)`` of a look-up (SQLite binds at most 32,766 parameters a statement).
_IN_CHUNK = 1000


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + _IN_CHUNK] for i in range(0, len(values), _IN_CHUNK)]


@dataclass
class _Known:
    """What a request's look-ups found stored, by UID; the instances and series gain the
    rows the request creates, so a later study of the same request sees them."""

    #: Study and the id of its link row when that row lacks the re-identification record.
    studies: dict[str, tuple[Study, uuid.UUID | None]] = field(default_factory=dict)
    #: Instance (of any study) and whether it has its re-identification record.
    instances: dict[str, tuple[Instance, bool]] = field(default_factory=dict)
    #: Series (of any study), without their instances.
    series: dict[str, Series] = field(default_factory=dict)


async def _created_keys(writes: list[asyncio.Future[list[StoredObject]]]) -> list[str]:
    """The keys that ``writes`` created (not replaced), once every one of them has ended."""
    done = await asyncio.gather(*writes, return_exceptions=True)
    return [
        item.key
        for stored in done
        if not isinstance(stored, BaseException)
        for item in stored
        if not item.replaced
    ]


def same_dicom_content(first: bytes, second: bytes) -> bool:
    """Whether two stored DICOM objects hold the same instance in different encodings.

    Equal means: every attribute outside the File Meta Information and the pixel data is
    equal, and the decoded pixels (every frame) are identical. NIfTI objects never compare
    equal here: their identity is already their decoded content.
    """
    try:
        a = pydicom.dcmread(BytesIO(first))
        b = pydicom.dcmread(BytesIO(second))
    except Exception:  # not DICOM (a NIfTI object) or unreadable: not the same
        return False
    a_tags, b_tags = set(a.keys()), set(b.keys())
    pixel_tags = {tag for tag in a_tags | b_tags if tag.group == 0x7FE0}
    if a_tags - pixel_tags != b_tags - pixel_tags:
        return False
    if any(a[tag] != b[tag] for tag in a_tags - pixel_tags):
        return False
    try:
        return bool(np.array_equal(a.pixel_array, b.pixel_array))
    except Exception:  # a decoder failure proves nothing: treat as a conflict
        return False


def _drop_file(prepared: list[PreparedStudy], filename: object) -> bool:
    """Remove the instance named ``filename`` (and studies left empty); False if none is."""
    for study in prepared:
        for instance in study.instances:
            if instance.filename == filename:
                study.instances.remove(instance)
                if not study.instances:
                    prepared.remove(study)
                return True
    return False


def _merge_modality(current: str, incoming: str) -> str:
    parts = {part for part in (current.split("/") + incoming.split("/")) if part and part != "OT"}
    return "/".join(sorted(parts)) or "OT"


async def get_study(session: AsyncSession, study_id: uuid.UUID) -> Study:
    """The study with ``study_id``; NotFoundError otherwise."""
    study = await session.get(Study, study_id)
    if study is None:
        raise NotFoundError(f"study {study_id} not found", code="study_not_found")
    return study


async def original_study_uid(
    session: AsyncSession, study: Study, cipher: LinkCipher, actor: Actor
) -> str:
    """Decrypt the study's original Study Instance UID; the read is audited."""
    link = await session.scalar(select(StudyLink).where(StudyLink.study_id == study.id))
    if link is None:
        raise NotFoundError("this study has no link to an original UID", code="link_not_found")
    value = cipher.decrypt(link.original_study_uid_encrypted)
    await chain.append(
        session, "study.link_read", actor, target_type="study", target_id=str(study.id)
    )
    await session.commit()
    return value
