"""The DICOM listener: a pynetdicom C-ECHO and C-STORE SCP feeding the one ingest service.

Design (docs/pacs-listener.md explains it for operators):

* **Who may associate.** Only calling AE titles in ``MEDVISION_DICOM_ALLOWED_AES``; each maps
  to the username of an active integration or admin account, looked up when the association
  is requested. Anyone else gets A-ASSOCIATE-RJ (rejected-permanent, service user, "calling
  AE title not recognised"). Instances are stored and the association audited as that account.
* **What a success status promises.** The SCU may delete its copy once it reads 0x0000, so
  the handler answers success only after the instance passed the same validation an upload
  gets (``read_dicom``: parse, SOP class, attributes, limits, decodable first frame) and its
  Part-10 bytes are durably spooled (written, fsynced, renamed, directory fsynced) under
  ``<data_dir>/dicom-spool``. A failed validation is answered at once with a failure status
  and nothing is kept.
* **Batching.** SCUs send one C-STORE at a time and wait for its response, so batching
  "until the commit" inside one association would mean one transaction per instance. Instead
  the spooled instances of an association go through ``IngestService.ingest_each`` (the same
  validation, de-identification, hashing, storage and routing as an HTTP upload) in batches of
  up to :data:`BATCH_SIZE`, when the batch is full, after :data:`BATCH_IDLE_S` without new
  instances, and at release/abort: one transaction per batch, while the association goes on
  receiving; up to ``dicom_ingest_processes`` full batches of an association at a time. A
  spooled file is deleted once its batch committed (or the ingest rejected it); the
  association is audited and its spool removed once no batch of it is in flight.
* **Failures after acceptance.** What only the database can tell (``instance_conflict``: the
  same SOP Instance UID with other content, a series under another study) is found when the
  batch is stored, after the SCU was told success. Those instances are dropped, counted by
  error code in the association's audit entry (``failed_after_acceptance``) and logged by code.
  A batch that fails as a whole (database down) stays spooled and is retried.
* **Crash recovery.** At start-up every spool left by a previous process is ingested as the
  account recorded beside it, then removed (audited ``dicom.spool_replayed``).

The asyncio event loop runs in the main thread (account checks, audit entries); pynetdicom
runs each association in a thread of its own, and its handlers hand work to the loop with
``asyncio.run_coroutine_threadsafe``. The batches themselves are stored by separate
ingest processes (control.dicom.ingest_worker), so receiving and storing do not take turns
on one GIL. Only SOP-class names, AE titles, counts and error codes
are logged or audited, never UIDs or patient attributes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog
from pydicom import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.db.models import Role, User
from control.dicom import ingest_worker
from control.dicom.ingest_worker import BatchOutcome, ingest_spooled, init_worker
from control.dicom.reader import SUPPORTED_SOP_CLASSES, UploadLimits, read_dicom
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.errors import MedVisionError
from control.storage import ObjectStore

log = structlog.get_logger("medvision.dicom.listener")

#: Instances of one association stored per transaction (at most).
BATCH_SIZE = 64
#: A partial batch is stored once the association has been quiet this long.
BATCH_IDLE_S = 0.5
#: Delay before a batch whose transaction failed as a whole is tried again.
RETRY_DELAY_S = 5.0
#: How long an association request waits for the account check before it is refused.
ACCOUNT_CHECK_TIMEOUT_S = 10.0
SPOOL_DIR_NAME = "dicom-spool"
VERIFICATION_SOP_CLASS = UID("1.2.840.10008.1.1")
_META_FILE = "association.json"

#: Transfer syntaxes offered for every storage SOP class, in preference order; only those
#: with an installed pydicom pixel decoder are accepted (:func:`accepted_transfer_syntaxes`).
CANDIDATE_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

# C-STORE statuses (PS3.4 B.2.3, PS3.7 C).
SUCCESS = 0x0000
#: Error: data set does not match SOP class (a header MedVision cannot use).
DATASET_MISMATCH = 0xA900
#: Error: cannot understand (not parseable, pixel data not decodable).
CANNOT_UNDERSTAND = 0xC000
#: Refused: out of resources (beyond the configured size limits).
OUT_OF_RESOURCES = 0xA700
#: Failure: processing failure (the spool could not be written).
PROCESSING_FAILURE = 0x0110
_STATUS_BY_CODE = {
    "not_dicom": CANNOT_UNDERSTAND,
    "truncated_dicom": CANNOT_UNDERSTAND,
    "sequence_too_deep": CANNOT_UNDERSTAND,
    "pixel_decode_failed": CANNOT_UNDERSTAND,
    "unsupported_transfer_syntax": CANNOT_UNDERSTAND,
    "file_too_large": OUT_OF_RESOURCES,
    "image_too_large": OUT_OF_RESOURCES,
    "too_many_frames": OUT_OF_RESOURCES,
}
_ERROR_COMMENT_MAX = 64  # LO

T = TypeVar("T")


def accepted_transfer_syntaxes() -> list[UID]:
    """The candidate transfer syntaxes that this installation's pydicom can decode."""
    accepted = []
    for syntax in CANDIDATE_TRANSFER_SYNTAXES:
        try:
            available = get_decoder(syntax).is_available
        except NotImplementedError:
            available = False
        if available:
            accepted.append(syntax)
    return accepted


def status_for(error: MedVisionError) -> int:
    """The C-STORE failure status answering a rejected instance: cannot-understand (0xC000)
    for what cannot be parsed or decoded, out-of-resources (0xA700) beyond the size limits,
    and data-set-does-not-match-SOP-class (0xA900) for any other validation failure."""
    return _STATUS_BY_CODE.get(error.code, DATASET_MISMATCH)


def error_comment(error: MedVisionError) -> str:
    """The Error Comment sent with a failure status: the stable error code only (never the
    message, which may quote values from the data set), within the 64 characters of LO."""
    return f"MedVision: {error.code}"[:_ERROR_COMMENT_MAX]


def part10_bytes(file_meta: FileMetaDataset, dataset_bytes: bytes) -> bytes:
    """A DICOM Part-10 file: preamble, ``DICM``, the File Meta Information group and the data
    set exactly as received (still in its transfer syntax, deflated or compressed)."""
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, file_meta, enforce_standard=True)
    buffer.write(dataset_bytes)
    return buffer.getvalue()


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it survives a crash once this returns: a temporary
    file fsynced, renamed into place, and the directory fsynced."""
    partial = path.with_suffix(".part")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class AssociationState:
    """One accepted association: who it stores as, where it spools, what happened."""

    association_id: str
    calling_ae: str
    actor: Actor
    spool: Path
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    stored_new: int = 0
    stored_existing: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    failed_after_acceptance: Counter[str] = field(default_factory=Counter)
    pending: list[Path] = field(default_factory=list)
    sequence: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    flush_scheduled: bool = False
    closing: bool = False

    def audit_details(self) -> dict[str, Any]:
        """The association's audit details: AE title and counts by error code, no PHI."""
        return {
            "calling_ae": self.calling_ae,
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "stored_new": self.stored_new,
            "stored_existing": self.stored_existing,
            "failures": dict(sorted(self.failures.items())[:20]),
            "failed_after_acceptance": dict(sorted(self.failed_after_acceptance.items())[:20]),
        }


class DicomListener:
    """The C-ECHO/C-STORE SCP. Create it inside a running event loop, then ``await run()``."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        *,
        host: str | None = None,
        port: int | None = None,
        ae_title: str | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.store = store
        self.host = host or settings.dicom_host
        self.port = port if port is not None else settings.dicom_port
        self.ae_title = ae_title or settings.dicom_ae_title
        self.limits = UploadLimits.from_settings(settings)
        self.spool_root = settings.data_dir / SPOOL_DIR_NAME
        self.transfer_syntaxes = accepted_transfer_syntaxes()
        self._loop = asyncio.get_running_loop()
        self._associations: dict[int, AssociationState] = {}
        self._registry = threading.Lock()  # guards _associations (threads and the loop)
        self._pool = self._new_pool()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: ThreadedAssociationServer | None = None

    # -- life cycle -------------------------------------------------------------------

    def build_ae(self) -> AE:
        """The application entity: Verification plus every accepted storage SOP class."""
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = self.settings.dicom_max_pdu
        ae.maximum_associations = self.settings.dicom_max_associations
        ae.add_supported_context(VERIFICATION_SOP_CLASS)
        for sop_class in sorted(SUPPORTED_SOP_CLASSES):
            ae.add_supported_context(sop_class, self.transfer_syntaxes)
        return ae

    async def start(self) -> None:
        """Replay spools left by a previous process, then start accepting associations."""
        self.spool_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One call per process, submitted together: the pool starts them all now, so that
        # the first batches do not pay for starting them.
        started = [
            self._loop.run_in_executor(self._pool, ingest_worker.ready)
            for _ in range(self.settings.dicom_ingest_processes)
        ]
        if not all(await asyncio.gather(*started)):
            raise RuntimeError("the ingest processes did not start")
        await self.replay_spools()
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_connection_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_closed),
            (evt.EVT_ABORTED, self._on_closed),
        ]
        ae = self.build_ae()
        server = ae.start_server(
            (self.host, self.port),
            block=False,
            evt_handlers=handlers,  # type: ignore[arg-type]
        )
        if server is None:  # only a blocking start returns None
            raise RuntimeError("pynetdicom did not return its association server")
        self._server = server
        self.port = int(server.server_address[1])

    async def stop(self) -> None:
        """Stop accepting, let open associations end, and store what they spooled."""
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._server = None
        with self._registry:
            open_states = list(self._associations.values())
        for state in open_states:
            await self._close(state)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await asyncio.to_thread(self._pool.shutdown)

    # -- pynetdicom handlers (association threads) ---------------------------------------

    def _on_connection_open(self, event: Event) -> None:
        """Disable Nagle's algorithm on the accepted socket: each PDV is answered at once."""
        sock = event.assoc.dul.socket
        raw = getattr(sock, "socket", None)
        if isinstance(raw, socket.socket):
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_requested(self, event: Event) -> None:
        """Accept only an allowed calling AE whose mapped account is active and may store."""
        assoc = event.assoc
        primitive = assoc.requestor.primitive
        calling_ae = str(getattr(primitive, "calling_ae_title", "") or "").strip()
        username = self.settings.dicom_allowed_aes.get(calling_ae)
        actor = None
        if username is not None:
            try:
                actor = self._call(self._account(username)).result(ACCOUNT_CHECK_TIMEOUT_S)
            except Exception:
                log.exception("dicom_account_check_failed", calling_ae=calling_ae)
                actor = None
        if actor is None:
            log.warning("dicom_association_rejected", calling_ae=calling_ae[:16])
            # Rejected-permanent, by the service user, calling AE title not recognised; as
            # pynetdicom's own rejections do, stop the association once the PDU is sent.
            assoc.acse.send_reject(0x01, 0x01, 0x03)
            assoc.kill()
            return
        association_id = uuid.uuid4().hex
        spool = self.spool_root / association_id
        spool.mkdir(mode=0o700)
        meta = {"calling_ae": calling_ae, "username": actor.username, "role": actor.role}
        _write_durably(spool / _META_FILE, json.dumps(meta).encode())
        with self._registry:
            self._associations[id(assoc)] = AssociationState(
                association_id, calling_ae, actor, spool
            )
        log.info("dicom_association_requested", calling_ae=calling_ae, account=actor.username)

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_store(self, event: Event) -> int | Dataset:
        """Validate one instance and spool it durably; the status says which happened."""
        with self._registry:
            state = self._associations.get(id(event.assoc))
        if state is None:  # not accepted by _on_requested: cannot happen once established
            return PROCESSING_FAILURE
        with state.lock:
            state.received += 1
            number = next(state.sequence)
        name = f"{number:08d}.dcm"
        try:
            request = cast(C_STORE, event.request)
            if not isinstance(request.DataSet, BytesIO):
                raise MedVisionError("no data set", code="not_dicom")
            data = part10_bytes(event.file_meta, request.DataSet.getvalue())
            read_dicom(data, name, self.limits)
        except MedVisionError as error:
            return self._failure(state, error)
        except Exception:
            return self._failure(state, MedVisionError("unreadable", code="not_dicom"))
        try:
            _write_durably(state.spool / name, data)
        except OSError:
            log.exception("dicom_spool_write_failed", calling_ae=state.calling_ae)
            return self._failure(
                state, MedVisionError("spool", code="spool_write_failed"), PROCESSING_FAILURE
            )
        with state.lock:
            state.accepted += 1
            state.pending.append(state.spool / name)
            full = len(state.pending) >= BATCH_SIZE
            schedule = full or not state.flush_scheduled
            state.flush_scheduled = True
        if schedule:
            self._call(self._flush_later(state, 0.0 if full else BATCH_IDLE_S))
        return SUCCESS

    def _failure(self, state: AssociationState, error: MedVisionError, status: int = 0) -> Dataset:
        status = status or status_for(error)
        with state.lock:
            state.rejected += 1
            state.failures[f"{status:#06x}:{error.code}"] += 1
        log.info("dicom_instance_rejected", code=error.code, status=f"{status:#06x}")
        answer = Dataset()
        answer.Status = status
        answer.ErrorComment = error_comment(error)
        return answer

    def _on_closed(self, event: Event) -> None:
        with self._registry:
            state = self._associations.get(id(event.assoc))
        if state is not None:
            self._call(self._close(state))

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the event loop from a pynetdicom thread."""
        return asyncio.run_coroutine_threadsafe(self._tracked(coroutine), self._loop)

    async def _tracked(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` as a task :meth:`stop` waits for."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await coroutine
        finally:
            if task is not None:
                self._tasks.discard(task)

    # -- the event loop side ------------------------------------------------------------

    async def _account(self, username: str) -> Actor | None:
        """The actor for ``username`` if it names an active integration or admin account."""
        async with self.session_factory() as session:
            user = await session.scalar(
                select(User).where(func.lower(User.username) == username.lower())
            )
        if user is None or not user.is_active or user.role not in (Role.INTEGRATION, Role.ADMIN):
            return None
        return Actor(username=user.username, role=str(user.role.value))

    async def _flush(self, state: AssociationState) -> bool:
        """Store what the association spooled so far, a batch per transaction, up to one
        batch per ingest process at a time; returns when none is in flight. False when the
        database refused a batch (it stays spooled and pending)."""
        async with state.flushing:
            running: set[asyncio.Task[bool]] = set()
            refused = False
            try:
                while True:
                    batch = [] if refused else self._next_batch(state, bool(running))
                    if batch:
                        running.add(asyncio.ensure_future(self._ingest_or_requeue(state, batch)))
                        if len(running) < self.settings.dicom_ingest_processes:
                            continue
                    if not running:
                        return not refused
                    done, running = await asyncio.wait(running, return_when="FIRST_COMPLETED")
                    refused = refused or not all(task.result() for task in done)
            finally:
                if running:  # cancelled or failed: the batches in flight still finish
                    await asyncio.gather(*running, return_exceptions=True)

    @staticmethod
    def _next_batch(state: AssociationState, others_running: bool) -> list[Path]:
        """The next batch to store: up to :data:`BATCH_SIZE` pending files, but only a full
        one while another batch is in flight (a partial one waits to grow); none left clears
        ``flush_scheduled``."""
        with state.lock:
            if others_running and len(state.pending) < BATCH_SIZE:
                return []
            batch = state.pending[:BATCH_SIZE]
            del state.pending[:BATCH_SIZE]
            if not batch:
                state.flush_scheduled = False
            return batch

    async def _ingest_or_requeue(self, state: AssociationState, batch: list[Path]) -> bool:
        """:meth:`_ingest_batch`; a refused batch goes back to the front of ``pending``."""
        if await self._ingest_batch(state, batch):
            return True
        with state.lock:
            state.pending[:0] = batch
        return False

    async def _flush_later(self, state: AssociationState, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if not await self._flush(state) and not state.closing:
            self._call_soon(self._flush_later(state, RETRY_DELAY_S))

    def _call_soon(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(self._tracked(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ingest_batch(self, state: AssociationState, batch: list[Path]) -> bool:
        """One transaction through the ingest service, in the ingest process; spool files of
        the stored and of the rejected instances are deleted after it commits."""
        names = [str(path) for path in batch]
        actor = state.actor
        pool = self._pool
        try:
            outcome = await self._loop.run_in_executor(
                pool, ingest_spooled, names, actor.username, actor.role
            )
        except BrokenProcessPool:
            if self._pool is pool:  # the first batch to see it replaces the broken pool
                pool.shutdown(wait=False)
                self._pool = self._new_pool()
            outcome = BatchOutcome(ok=False, error_code="ingest_process_died")
        if not outcome.ok:
            log.warning("dicom_batch_failed", code=outcome.error_code, instances=len(batch))
            return False
        with state.lock:
            state.stored_new += outcome.stored_new
            state.stored_existing += outcome.stored_existing
            for code in outcome.rejected_codes:
                state.failed_after_acceptance[code] += 1
        for code in outcome.rejected_codes:
            log.warning("dicom_instance_failed_after_acceptance", code=code)
        for path in batch:
            path.unlink(missing_ok=True)
        return True

    def _new_pool(self) -> ProcessPoolExecutor:
        """The ingest processes (see control.dicom.ingest_worker), started by spawning: the
        listener has threads, which a forked child must not inherit."""
        return ProcessPoolExecutor(
            max_workers=self.settings.dicom_ingest_processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.settings,),
        )

    async def _close(self, state: AssociationState) -> None:
        """At release or abort: store the rest, audit the association, remove its spool.
        Runs once per association (an abort during shutdown may ask twice)."""
        if state.closing:
            return
        state.closing = True
        if not await self._flush(state):
            # The database refused the last batch: the spool stays for the next start.
            self._forget(state)
            return
        async with self.session_factory() as session:
            await chain.append(
                session,
                "dicom.association",
                state.actor,
                target_type="dicom_association",
                target_id=state.association_id,
                outcome="success" if not state.rejected else "partial",
                details=state.audit_details(),
            )
            await session.commit()
        shutil.rmtree(state.spool, ignore_errors=True)
        self._forget(state)
        log.info("dicom_association_closed", **state.audit_details())

    def _forget(self, state: AssociationState) -> None:
        with self._registry:
            for key in [k for k, v in self._associations.items() if v is state]:
                del self._associations[key]

    async def replay_spools(self) -> None:
        """Ingest every spool a previous process left (it had answered success for those
        instances), as the account recorded with it; audited, then removed."""
        for spool in sorted(p for p in self.spool_root.iterdir() if p.is_dir()):
            meta_path = spool / _META_FILE
            if not meta_path.exists():  # the crash came before the first instance
                shutil.rmtree(spool, ignore_errors=True)
                continue
            meta = json.loads(meta_path.read_text())
            actor = Actor(username=meta["username"], role=meta["role"])
            state = AssociationState(spool.name, meta["calling_ae"], actor, spool)
            state.pending = sorted(spool.glob("*.dcm"))
            state.received = state.accepted = len(state.pending)
            if not await self._flush(state):
                raise RuntimeError("the database refused a spooled batch; retry later")
            async with self.session_factory() as session:
                await chain.append(
                    session,
                    "dicom.spool_replayed",
                    actor,
                    target_type="dicom_association",
                    target_id=state.association_id,
                    details=state.audit_details(),
                )
                await session.commit()
            shutil.rmtree(spool, ignore_errors=True)
            log.info("dicom_spool_replayed", **state.audit_details())


async def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    ae_title: str | None = None,
    started: Callable[[DicomListener], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the listener until ``stop`` is set: migrate (when configured), replay spools,
    accept associations; on stop, finish open work and dispose of the engine."""
    from control.db.engine import create_engine, create_session_factory
    from control.db.migrate import upgrade
    from control.storage import build_store

    # pynetdicom logs every request at INFO and whole DIMSE messages (original UIDs) at
    # DEBUG; the listener's own lines say what happened without them.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if settings.migrate_on_startup:
        await asyncio.to_thread(upgrade, settings)
    engine = create_engine(settings)
    try:
        listener = DicomListener(
            settings,
            create_session_factory(engine),
            build_store(settings),
            host=host,
            port=port,
            ae_title=ae_title,
        )
        await listener.start()
        if started is not None:
            started(listener)
        await (stop or asyncio.Event()).wait()
        await listener.stop()
    finally:
        await engine.dispose()
