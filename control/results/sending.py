"""Sending result objects to the configured destinations: the export job and its transports.

One attempt of an export (:meth:`ExportSender.run_once`): claim it, decrypt the study's
re-identification record (audited), collect the signed-off content, build the object
(:mod:`control.results.sr`, :mod:`control.results.seg`), re-identify a copy in memory for
the destination, and send it — C-STORE with pynetdicom or STOW-RS with httpx. The outcome is
written to the export row with an audit entry, ``result.sent`` or ``result.send_failed``,
whose details are bounded and free of PHI: destination name, object kind, the result's SOP
Instance UID (a UID MedVision made, the same in and outside MedVision), status code,
attempt. A failure the peer may get over (connection refused, association rejected or
aborted, a timeout, an out-of-resources status, HTTP 5xx/408/429) is retried after a
backoff; one it cannot (the SOP class refused, HTTP 4xx, a case whose content cannot be
built) fails the export at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from io import BytesIO
from typing import Any

import anyio.to_thread
import httpx
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.db.models import ExportStatus
from control.domain.audit import chain
from control.domain.audit.chain import SYSTEM
from control.errors import MedVisionError
from control.results import jobs
from control.results.collect import (
    CaseFacts,
    collect_brats,
    collect_ct_head,
    collect_cxr,
    load_facts,
)
from control.results.destinations import CStoreDestination, StowDestination, find_destination
from control.results.jobs import BRATS_SEG, ClaimedExport
from control.results.objects import CT_HEAD_SR
from control.results.records import RecordCipher, load_record
from control.results.reidentify import reidentify
from control.results.seg import build_brats_seg
from control.results.sr import build_brats_sr, build_ct_head_sr, build_cxr_sr
from control.storage import ObjectStore

__all__ = ["ExportSender", "SendFailure", "send_c_store", "send_stow"]

logger = logging.getLogger("medvision.results")

#: C-STORE statuses that say the peer is short of something now (PS3.4 B.2.3): retry.
_RETRY_STATUS_PREFIX = 0xA700
#: Bytes of an error text kept in the export row (peer answers can be long).
_MAX_ERROR_CHARS = 300


class SendFailure(Exception):
    """A send that did not deliver: ``code`` is stable, ``status`` the peer's (if any)."""

    def __init__(
        self, code: str, message: str, *, retryable: bool, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message[:_MAX_ERROR_CHARS]
        self.retryable = retryable
        self.status = status


def encode_part10(ds: pydicom.Dataset) -> bytes:
    """``ds`` as DICOM Part 10 bytes (its file meta; explicit VR little endian if it has none)."""
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        meta = pydicom.dataset.FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def send_c_store(
    ds: pydicom.Dataset, destination: CStoreDestination, timeout_s: float, calling_ae: str
) -> int:
    """C-STORE ``ds`` to ``destination`` on one association, calling as
    ``destination.calling_ae_title`` (else ``calling_ae``); the success status (0x0000 or a
    warning 0xB...). Raises :class:`SendFailure`. Blocking: run it in a worker thread."""
    from pynetdicom import AE

    ae = AE(ae_title=destination.calling_ae_title or calling_ae)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    meta = getattr(ds, "file_meta", None)
    own = [meta.TransferSyntaxUID] if meta is not None and "TransferSyntaxUID" in meta else []
    syntaxes = list(dict.fromkeys([*own, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    ae.add_requested_context(ds.SOPClassUID, syntaxes)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise SendFailure(
                "association_rejected", "the peer rejected the association", retryable=True
            )
        raise SendFailure(
            "peer_unreachable",
            "no association with the peer (refused, unreachable or aborted)",
            retryable=True,
        )
    try:
        raw = assoc.dul.socket.socket if assoc.dul.socket else None
        if raw is not None:  # one PDU per write: no Nagle delay between PDVs
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not assoc.accepted_contexts:
            raise SendFailure(
                "sop_class_refused",
                f"the peer accepts no context for the SOP class {ds.SOPClassUID}",
                retryable=False,
            )
        status = assoc.send_c_store(ds)
    finally:
        with contextlib.suppress(Exception):
            assoc.release()
    if not status or "Status" not in status:
        raise SendFailure("no_response", "the peer answered no C-STORE status", retryable=True)
    code = int(status.Status)
    if code == 0x0000 or code & 0xF000 == 0xB000:
        return code
    retryable = code & 0xFF00 == _RETRY_STATUS_PREFIX
    raise SendFailure(
        "c_store_failed", f"C-STORE status 0x{code:04X}", retryable=retryable, status=code
    )


async def send_stow(
    ds: pydicom.Dataset,
    destination: StowDestination,
    timeout_s: float,
    client: httpx.AsyncClient | None = None,
) -> int:
    """STOW-RS ``ds`` to ``{destination.url}/studies``; the HTTP status (200 or 202).

    A multipart/related body with one ``application/dicom`` part. Raises
    :class:`SendFailure`: retryable for connection errors, timeouts, 408, 429 and 5xx.
    """
    boundary = "medvision-" + ds.SOPInstanceUID.replace(".", "")[-40:]
    part = encode_part10(ds)
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + part
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if destination.token is not None:
        headers["Authorization"] = f"Bearer {destination.token.get_secret_value()}"
    owned = client is None
    http = client or httpx.AsyncClient(timeout=timeout_s)
    try:
        response = await http.post(f"{destination.url}/studies", content=body, headers=headers)
    except httpx.TimeoutException:
        raise SendFailure("timeout", "the STOW-RS request timed out", retryable=True) from None
    except httpx.HTTPError as exc:
        raise SendFailure(
            "peer_unreachable", f"STOW-RS request failed ({type(exc).__name__})", retryable=True
        ) from None
    finally:
        if owned:
            await http.aclose()
    if response.status_code in (200, 202):
        return response.status_code
    retryable = response.status_code in (408, 429) or response.status_code >= 500
    raise SendFailure(
        "stow_failed",
        f"STOW-RS answered HTTP {response.status_code}",
        retryable=retryable,
        status=response.status_code,
    )


class ExportSender:
    """Runs due result exports, one at a time; safe beside other senders (leases)."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.store = store
        self.worker_id = worker_id
        self.cipher = RecordCipher(settings.key("reid"))

    async def run_once(self) -> bool:
        """Send one due export if there is one; False when none was due."""
        claimed = await jobs.claim(self.session_factory, self.worker_id, self.settings)
        if claimed is None:
            return False
        done = asyncio.Event()
        heartbeat = asyncio.create_task(self._keep_lease(claimed, done))
        try:
            status = await self._attempt(claimed)
        except SendFailure as failure:
            await self._record_failure(claimed, failure)
        except MedVisionError as exc:  # the content cannot be collected or built
            await self._record_failure(claimed, SendFailure(exc.code, exc.message, retryable=False))
        except Exception as exc:  # a builder bug or a storage outage: retry, then fail
            logger.error("export %s: attempt crashed (%s)", claimed.id, type(exc).__name__)
            await self._record_failure(
                claimed, SendFailure("internal_error", type(exc).__name__, retryable=True)
            )
        else:
            await self._record_sent(claimed, status)
        finally:
            done.set()
            await heartbeat
        return True

    async def _keep_lease(self, claimed: ClaimedExport, done: asyncio.Event) -> None:
        """Renew the lease every third of it while the attempt runs (a large SEG to a slow
        PACS may outlast one lease), so no other worker sends the same export meanwhile."""
        interval = max(self.settings.job_lease_s / 3, 0.2)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), interval)
                return
            try:
                await jobs.renew_lease(
                    self.session_factory, claimed, self.worker_id, self.settings.job_lease_s
                )
            except Exception:
                logger.warning("export %s: could not renew its lease", claimed.id)

    async def _attempt(self, claimed: ClaimedExport) -> int:
        destination = find_destination(self.settings.dicom_destinations, claimed.destination)
        if destination is None:
            raise SendFailure(
                "destination_unknown",
                f"no destination {claimed.destination!r} is configured",
                retryable=False,
            )
        if claimed.finding_id is None:
            raise SendFailure("case_not_found", "the export has no finding", retryable=False)
        preliminary = claimed.object_name == jobs.CXR_SR_PRELIMINARY
        # Short transactions: none is open while objects are fetched, built or sent.
        async with self.session_factory() as session:
            facts = await load_facts(
                session,
                claimed.case_id,
                claimed.finding_id,
                self.settings,
                preliminary=preliminary,
            )
            await session.commit()  # ends the read; the loaded rows stay usable
        built = await self._build(facts, claimed)  # pseudonymous
        async with self.session_factory() as session:
            record = await load_record(
                session,
                facts.case.study,
                self.cipher,
                SYSTEM,
                {
                    "purpose": "result_send",
                    "export_id": str(claimed.id),
                    "destination": claimed.destination,
                },
            )
            if record is None:
                raise SendFailure(
                    jobs.NO_RECORD, "the study has no re-identification record", retryable=False
                )
            await session.commit()  # the read is audited before anything leaves
        outgoing = await anyio.to_thread.run_sync(reidentify, built, record)
        del record
        timeout_s = self.settings.result_send_timeout_s
        if isinstance(destination, CStoreDestination):
            return await anyio.to_thread.run_sync(
                send_c_store, outgoing, destination, timeout_s, self.settings.dicom_ae_title
            )
        return await send_stow(outgoing, destination, timeout_s)

    async def _build(self, facts: CaseFacts, claimed: ClaimedExport) -> pydicom.Dataset:
        """The result object of ``claimed``, built from MedVision's pseudonymous content."""
        if claimed.object_name in (jobs.CXR_SR, jobs.CXR_SR_PRELIMINARY):
            report = await collect_cxr(self.store, self.settings, facts, claimed.object_name)

            def build() -> pydicom.Dataset:
                return build_cxr_sr(report)
        elif claimed.object_name == CT_HEAD_SR:
            ct_report = await collect_ct_head(self.store, self.settings, facts)

            def build() -> pydicom.Dataset:
                return build_ct_head_sr(ct_report)
        else:
            result = await collect_brats(self.store, self.settings, facts)

            def build() -> pydicom.Dataset:
                seg = build_brats_seg(result)
                return seg if claimed.object_name == BRATS_SEG else build_brats_sr(result, seg)

        try:
            dataset = await anyio.to_thread.run_sync(build)
        except ValueError as exc:  # the builders refuse content they cannot encode
            raise SendFailure("result_not_buildable", str(exc), retryable=False) from None
        if str(dataset.SOPInstanceUID) != claimed.sop_instance_uid:
            raise SendFailure(
                "uid_mismatch",
                "the built object's SOP Instance UID is not the export's",
                retryable=False,
            )
        return dataset

    def _details(self, claimed: ClaimedExport, **extra: Any) -> dict[str, Any]:
        return {
            "export_id": str(claimed.id),
            "destination": claimed.destination,
            "kind": claimed.kind,
            "object": claimed.object_name,
            "sop_instance_uid": claimed.sop_instance_uid,
            "attempt": claimed.attempt,
            **extra,
        }

    async def _record_sent(self, claimed: ClaimedExport, status: int) -> None:
        async with self.session_factory() as session:
            export = await jobs.held(session, claimed, self.worker_id)
            if export is None:  # another worker took it over; it sends the same UID
                await session.rollback()
                return
            jobs.mark_sent(export)
            await chain.append(
                session,
                "result.sent",
                SYSTEM,
                target_type="case",
                target_id=str(claimed.case_id),
                details=self._details(claimed, status=status),
            )
            await session.commit()
        logger.info(
            "export %s: %s sent to %s (attempt %d)",
            claimed.id,
            claimed.kind,
            claimed.destination,
            claimed.attempt,
        )

    async def _record_failure(self, claimed: ClaimedExport, failure: SendFailure) -> None:
        async with self.session_factory() as session:
            export = await jobs.held(session, claimed, self.worker_id)
            if export is None:
                await session.rollback()
                return
            status = jobs.mark_failed_attempt(
                export,
                failure.code,
                failure.message,
                retryable=failure.retryable,
                settings=self.settings,
            )
            await chain.append(
                session,
                "result.send_failed",
                SYSTEM,
                target_type="case",
                target_id=str(claimed.case_id),
                outcome="failure",
                details=self._details(
                    claimed,
                    code=failure.code,
                    status=failure.status,
                    final=status == ExportStatus.FAILED,
                ),
            )
            await session.commit()
        logger.warning(
            "export %s: attempt %d to %s failed (%s) -> %s",
            claimed.id,
            claimed.attempt,
            claimed.destination,
            failure.code,
            status.value,
        )


async def drain(sender: ExportSender, *, limit: int = 1000) -> int:
    """Run due exports until none is due (tests, the CLI); how many attempts ran."""
    ran = 0
    while ran < limit and await sender.run_once():
        ran += 1
        await asyncio.sleep(0)
    return ran
