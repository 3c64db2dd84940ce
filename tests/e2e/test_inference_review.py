"""Studies flow through a real Triton server to findings that a radiologist reviews.

One tritonserver for the module, serving the committed repository with tiny networks. The
control plane's job worker runs inside the app (as under ``medvision serve``) or as real
``medvision worker`` processes; every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.db.engine import create_engine, create_session_factory
from control.db.models import AuditEntry, Finding, InferenceJob, JobStatus
from control.inference.worker import Worker, run_worker
from control.storage import ObjectStore, build_store
from control.triton.server import (
    TritonServer,
    find_free_port,
    free_triton_ports,
)
from tests.conftest import SECRET
from tests.control.triton import skip_without_triton
from tests.fixtures.ct import ct_slice
from tests.fixtures.dx import chest_dx
from tests.fixtures.mr_series import brats_phantom_study
from tests.fixtures.triton_repo import TINY_MAX_PIXELS, TINY_MODEL_VERSION, build_tiny_repository
from tests.fixtures.uploads import upload

skip_without_triton()

WAIT_S = 120.0


class ManagedTriton:
    """A tritonserver on fixed ports that a test may stop and start again."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self.ports = free_triton_ports()
        self.server: TritonServer | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc_port']}"

    def start(self) -> None:
        self.server = TritonServer(self.repository, **self.ports)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def signal(self, signum: int) -> None:
        assert self.server is not None and self.server.pid is not None
        os.kill(self.server.pid, signum)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedTriton]:
    repository = build_tiny_repository(tmp_path_factory.mktemp("serve") / "model_repository")
    managed = ManagedTriton(repository)
    managed.start()
    try:
        yield managed
    finally:
        managed.stop()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, triton: ManagedTriton) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        secret_key=SECRET,
        triton_url=triton.url,
        triton_required=False,
        triton_timeout_s=60,
        # The app runs in the test client's own event loop; the worker runs on a thread of
        # its own with its own engine (``running_worker``), as ``medvision worker`` would.
        worker_enabled=False,
        worker_poll_s=0.2,
        job_backoff_s=0.3,
        job_backoff_max_s=2.0,
        job_max_attempts=60,
        job_lease_s=3.0,
        # A head CT series sent in several requests is read once, whole.
        ct_series_settle_s=1.0,
    )


@dataclass
class RunningWorker:
    """A job worker on a thread and event loop of its own; ``session_factory`` is for the
    test's reads, on the test's loop."""

    session_factory: async_sessionmaker[AsyncSession]


@pytest.fixture
async def running_worker(client, settings: Settings) -> AsyncIterator[RunningWorker]:
    """A job worker with its own database engine, after the app has migrated the database.

    It runs on its own thread, as a ``medvision worker`` process would run on its own: the
    test client runs each request through a blocking portal, which stops the test's event
    loop until the response, so a worker on that loop could hold SQLite's write lock (between
    its BEGIN IMMEDIATE and COMMIT) while the request waits for it.
    """
    started = threading.Event()
    worker_loop: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            worker_loop.update(loop=asyncio.get_running_loop(), stop=stop)
            started.set()
            await run_worker(settings, stop)

        asyncio.run(main())

    thread = threading.Thread(target=serve, name="medvision-worker", daemon=True)
    thread.start()
    assert started.wait(30), "the worker thread did not start"
    engine = create_engine(settings)
    try:
        yield RunningWorker(create_session_factory(engine))
    finally:
        loop, stop = worker_loop["loop"], worker_loop["stop"]
        loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(thread.join, 60)
        assert not thread.is_alive(), "the worker did not stop within 60 s"
        await engine.dispose()


def four_channel_nifti(shape: tuple[int, int, int] = (32, 32, 24)) -> bytes:
    """A 4-channel brain-like volume (channels last) with a bright blob, as .nii.gz bytes."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    head = np.exp(-(((grid - np.array(shape) / 2) / (np.array(shape) / 2.5)) ** 2).sum(-1))
    blob = np.exp(-(((grid - np.array([20, 14, 12])) / 4.0) ** 2).sum(-1))
    channels = [head * 400 + blob * weight for weight in (100, 600, 300, 500)]
    volume = np.stack(channels, axis=-1).astype(np.float32)
    image = nib.Nifti1Image(volume, np.diag([1.2, 1.2, 1.5, 1.0]))
    return gzip.compress(image.to_bytes(), mtime=0)


async def wait_for_status(client, account, case_id: str, *statuses: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while True:
        response = await client.get(f"/api/cases/{case_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        case = response.json()
        if case["status"] in statuses:
            return case
        assert time.monotonic() < deadline, f"case stuck in {case['status']}: {case}"
        await asyncio.sleep(0.2)


async def claim(client, account, case_id: str) -> None:
    response = await client.post(f"/api/cases/{case_id}/claim", headers=account.headers)
    assert response.status_code == 200, response.text


async def decide(client, account, case_id: str, finding_id: str, **body) -> object:
    return await client.post(
        f"/api/cases/{case_id}/findings/{finding_id}/decisions", json=body, headers=account.headers
    )


def medvision_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``medvision`` process on the test's database and data directory."""
    return {
        **os.environ,
        "MEDVISION_DATABASE_URL": settings.resolved_database_url,
        "MEDVISION_DATA_DIR": str(settings.data_dir),
        "MEDVISION_SECRET_KEY": SECRET,
        "MEDVISION_TRITON_URL": settings.triton_url,
        "MEDVISION_LOG_LEVEL": "WARNING",
        **extra,
    }


def audit_verify_cli(settings: Settings) -> dict:
    """``medvision audit verify`` in its own process: its JSON report (exit 0 when intact)."""
    result = subprocess.run(
        [sys.executable, "-m", "control.cli.main", "audit", "verify"],
        env=medvision_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[0])


async def test_upload_infer_review_sign_off(client, accounts, running_worker):
    pacs, rad1, rad2, admin = (accounts[n] for n in ("pacs1", "rad1", "rad2", "admin1"))
    cxr_upload = await upload(client, pacs, ("chest.dcm", chest_dx(256, seed=3)))
    mri_upload = await upload(client, pacs, ("brain.nii.gz", four_channel_nifti()))
    assert cxr_upload["studies"][0]["pipeline"] == "cxr"
    assert mri_upload["studies"][0]["pipeline"] == "brats"
    [cxr_id], [mri_id] = cxr_upload["case_ids"], mri_upload["case_ids"]

    cxr_case = await wait_for_status(client, rad1, cxr_id, "inferred", "failed")
    mri_case = await wait_for_status(client, rad1, mri_id, "inferred", "failed")
    assert cxr_case["status"] == mri_case["status"] == "inferred", (cxr_case, mri_case)

    [cxr_finding] = cxr_case["findings"]
    assert cxr_finding["kind"] == "classification"
    assert cxr_finding["model"] == {
        "name": "cxr",
        "network": "cxr_net",
        "version": TINY_MODEL_VERSION,
        "training_run_id": None,
        "synthetic": True,
    }
    assert len(cxr_finding["probabilities"]) == 14
    assert all(0.0 <= p <= 1.0 for p in cxr_finding["probabilities"].values())
    assert sorted(cxr_finding["labels"]) == sorted(
        label for label, p in cxr_finding["probabilities"].items() if p >= 0.5
    )
    assert len(cxr_finding["cam_labels"]) == 14
    assert cxr_finding["latency_ms"] > 0
    [mri_finding] = mri_case["findings"]
    assert mri_finding["kind"] == "segmentation"
    assert mri_finding["model"]["network"] == "brats_net"
    volumes = mri_finding["volumes_ml"]
    assert set(volumes) == {"enhancing_tumour", "tumour_core", "whole_tumour"}
    assert volumes["whole_tumour"] >= volumes["tumour_core"] >= volumes["enhancing_tumour"] >= 0

    # The CAM is stored as an image in the object store.
    store = client.app.state.store
    # Database reads from the test's own event loop go through an engine of its own: the
    # app's engine belongs to the test client's loop.
    async with running_worker.session_factory() as session:
        cam_key = (await session.get(Finding, uuid.UUID(cxr_finding["id"]))).artifacts["cams"]
        mri = await session.get(Finding, uuid.UUID(mri_finding["id"]))
        segmentation_key = mri.artifacts["segmentation"]
    cams = np.asarray(Image.open(BytesIO(await store.get(cam_key))))
    assert cams.shape == (14 * 128, 128)  # 14 maps of the 256² image, reduced to 128²
    assert (await store.get(segmentation_key))[:2] == b"\x1f\x8b"

    # Only the holder decides: claim first.
    response = await decide(client, rad1, cxr_id, cxr_finding["id"], action="accept")
    assert response.status_code == 403 and response.json()["code"] == "not_case_holder"
    await claim(client, rad1, cxr_id)
    await claim(client, rad1, mri_id)
    response = await decide(client, rad2, cxr_id, cxr_finding["id"], action="accept")
    assert response.status_code == 403, response.text

    # Sign-off needs a decision on every finding.
    version = (await client.get(f"/api/cases/{mri_id}", headers=rad1.headers)).json()["version"]
    response = await client.post(
        f"/api/cases/{mri_id}/sign-off", json={"version": version}, headers=rad1.headers
    )
    assert response.status_code == 409 and response.json()["code"] == "decisions_missing"

    # Accept the chest X-ray finding; two racing decisions on it: one wins, one gets 409.
    first, second = await asyncio.gather(
        decide(client, rad1, cxr_id, cxr_finding["id"], action="accept", note="agree"),
        decide(client, rad1, cxr_id, cxr_finding["id"], action="reject", reason="artefact"),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409], (
        first.text,
        second.text,
    )
    loser = first if first.status_code == 409 else second
    assert loser.json()["code"] in {"stale_decision", "decision_conflict"}
    winner = first if first.status_code == 201 else second
    if winner.json()["action"] != "accept":  # make the decision in force an accept
        response = await decide(
            client,
            rad1,
            cxr_id,
            cxr_finding["id"],
            action="accept",
            supersedes=winner.json()["id"],
        )
        assert response.status_code == 201, response.text
        assert response.json()["supersedes_id"] == winner.json()["id"]

    # Override the segmentation: a reason is required, and an edit replaces the mask.
    response = await decide(client, rad1, mri_id, mri_finding["id"], action="reject")
    assert response.status_code == 400 and response.json()["code"] == "reason_required"
    response = await decide(client, rad1, mri_id, mri_finding["id"], action="edit", reason="x")
    assert response.status_code == 400 and response.json()["code"] == "mask_required"
    mask = np.zeros((32, 32, 24), dtype=np.uint8)
    mask[10:20, 10:20, 8:16] = 2
    mask[13:17, 13:17, 10:14] = 3
    image = nib.Nifti1Image(mask, np.diag([1.2, 1.2, 1.5, 1.0]))
    response = await client.post(
        f"/api/cases/{mri_id}/findings/{mri_finding['id']}/mask",
        files={"file": ("mask.nii.gz", gzip.compress(image.to_bytes()), "application/gzip")},
        data={"reason": "tumour extends further posteriorly"},
        headers=rad1.headers,
    )
    assert response.status_code == 201, response.text
    edit = response.json()
    voxel_ml = 1.2 * 1.2 * 1.5 / 1000
    assert edit["action"] == "edit"
    assert edit["volumes_ml"]["whole_tumour"] == pytest.approx(800 * voxel_ml, abs=1e-3)
    assert edit["volumes_ml"]["enhancing_tumour"] == pytest.approx(64 * voxel_ml, abs=1e-3)

    for case_id in (cxr_id, mri_id):
        version = (await client.get(f"/api/cases/{case_id}", headers=rad1.headers)).json()[
            "version"
        ]
        response = await client.post(
            f"/api/cases/{case_id}/sign-off",
            json={"version": version, "note": "reviewed"},
            headers=rad1.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "signed_off"

    # Signed off: read-only.
    response = await decide(
        client,
        rad1,
        cxr_id,
        cxr_finding["id"],
        action="reject",
        reason="late",
        supersedes=None,
    )
    assert response.status_code == 409 and response.json()["code"] == "case_signed_off"

    history = (await client.get(f"/api/cases/{mri_id}/history", headers=admin.headers)).json()
    actions = [entry["action"] for entry in history]
    for expected in (
        "study.ingested",
        "inference.queued",
        "inference.completed",
        "decision.recorded",
        "case.signed_off",
    ):
        assert expected in actions, actions
    completed = next(e for e in history if e["action"] == "inference.completed")
    assert completed["details"]["model_version"] == TINY_MODEL_VERSION
    assert len(completed["details"]["input_sha256"]) == 64
    assert len(completed["details"]["output_sha256"]) == 64

    report = audit_verify_cli(client.app.state.settings)
    assert report["ok"] is True
    api_report = (await client.get("/api/audit/verify", headers=admin.headers)).json()
    assert api_report["ok"] is True and api_report["entries"] == report["entries"]


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "control.cli.main", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def job_of(settings: Settings, case_id: str) -> InferenceJob | None:
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            return await session.scalar(
                select(InferenceJob).where(InferenceJob.case_id == uuid.UUID(case_id))
            )
    finally:
        await engine.dispose()


async def count_rows(settings: Settings, query) -> int:
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(query.subquery())))
    finally:
        await engine.dispose()


async def test_worker_killed_mid_job_runs_it_exactly_once(client, accounts, settings, triton):
    """SIGKILL a real ``medvision worker`` while it waits on Triton; a second worker takes
    the job over once the lease expires, and the findings and audit entry exist once."""
    pacs, rad1 = accounts["pacs1"], accounts["rad1"]
    [case_id] = (await upload(client, pacs, ("chest.dcm", chest_dx(256, seed=11))))["case_ids"]
    env = medvision_env(settings, MEDVISION_JOB_LEASE_S="2", MEDVISION_WORKER_POLL_S="0.2")
    triton.signal(signal.SIGSTOP)  # the worker's Triton calls now hang: it is mid-job
    try:
        first = start_worker(env)
        deadline = time.monotonic() + 60
        while True:
            job = await job_of(settings, case_id)
            if job is not None and job.status == JobStatus.RUNNING:
                break
            assert time.monotonic() < deadline, "the first worker never took the job"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        first.kill()
        first.wait(timeout=10)
    finally:
        triton.signal(signal.SIGCONT)
    assert job.attempts == 1 and job.lease_owner
    second = start_worker(env)
    try:
        case = await wait_for_status(client, rad1, case_id, "inferred", "failed")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0  # a clean stop on SIGTERM
    assert case["status"] == "inferred"
    job = await job_of(settings, case_id)
    assert job.status == JobStatus.DONE
    assert job.attempts == 2 and job.lease_owner is None
    case_uuid = uuid.UUID(case_id)
    assert await count_rows(settings, select(Finding).where(Finding.case_id == case_uuid)) == 1
    completed = select(AuditEntry).where(
        AuditEntry.action == "inference.completed", AuditEntry.target_id == case_id
    )
    assert await count_rows(settings, completed) == 1
    assert audit_verify_cli(settings)["ok"] is True


def test_triton_down_at_upload_then_up(settings, triton, tmp_path):
    """With Triton stopped, uploads to a real ``medvision serve`` succeed and queue; once
    Triton is back, the in-process worker produces findings for every case."""
    env = medvision_env(
        settings,
        MEDVISION_PASSWORD="triton-down-password",
        MEDVISION_WORKER_POLL_S="0.2",
        MEDVISION_JOB_BACKOFF_S="0.3",
        MEDVISION_JOB_BACKOFF_MAX_S="1.5",
        MEDVISION_JOB_MAX_ATTEMPTS="100",
    )
    command = [sys.executable, "-m", "control.cli.main"]
    created = subprocess.run(
        [*command, "users", "create", "--role", "admin", "--username", "ops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    port = find_free_port()
    triton.stop()
    serve = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "medvision serve did not start"
                time.sleep(0.2)
            token = http.post(
                "/api/auth/token",
                data={
                    "grant_type": "password",
                    "username": "ops",
                    "password": "triton-down-password",
                },
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            uploads = [
                ("a.dcm", chest_dx(192, seed=21)),
                ("b.dcm", chest_dx(192, seed=22)),
                ("brain.nii.gz", four_channel_nifti()),
            ]
            case_ids = []
            for name, data in uploads:
                response = http.post(
                    "/api/studies", files=[("files", (name, data))], headers=headers
                )
                assert response.status_code == 201, response.text
                case_ids += response.json()["case_ids"]
            time.sleep(2.0)  # the worker tries, finds Triton down, backs off
            for case_id in case_ids:
                case = http.get(f"/api/cases/{case_id}", headers=headers).json()
                assert case["status"] == "queued", case
            triton.start()
            deadline = time.monotonic() + WAIT_S
            pending = set(case_ids)
            while pending:
                for case_id in list(pending):
                    case = http.get(f"/api/cases/{case_id}", headers=headers).json()
                    assert case["status"] != "failed", case
                    if case["status"] == "inferred":
                        assert len(case["findings"]) == 1
                        pending.discard(case_id)
                assert time.monotonic() < deadline, f"no findings for {pending}"
                time.sleep(0.3)
            history = http.get(f"/api/cases/{case_ids[0]}/history", headers=headers).json()
            assert "inference.completed" in [entry["action"] for entry in history]
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        if triton.server is None:
            triton.start()


async def test_mr_dicom_series_on_different_grids_are_segmented(client, accounts, running_worker):
    """Four MR series (T1, T1ce, T2, FLAIR) on their own grids are recognised, resampled onto
    the FLAIR grid and segmented; the stored image volume has FLAIR's geometry."""
    pacs, rad1 = accounts["pacs1"], accounts["rad1"]
    files = []
    for kind, datasets in brats_phantom_study().items():
        for index, dataset in enumerate(datasets):
            buffer = BytesIO()
            pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
            files.append((f"{kind}-{index}.dcm", buffer.getvalue()))
    body = await upload(client, pacs, *files)
    assert body["studies"][0]["pipeline"] == "brats"
    case = await wait_for_status(client, rad1, body["case_ids"][0], "inferred", "failed")
    assert case["status"] == "inferred", case
    [finding] = case["findings"]
    assert finding["kind"] == "segmentation"
    flair = brats_phantom_study()["FLAIR"]
    async with running_worker.session_factory() as session:
        stored = await session.get(Finding, uuid.UUID(finding["id"]))
        volume_key = stored.artifacts["volume"]
    image = nib.Nifti1Image.from_bytes(
        gzip.decompress(await client.app.state.store.get(volume_key))
    )
    assert image.shape == (flair[0].Columns, flair[0].Rows, len(flair), 4)
    spacing = np.linalg.norm(image.affine[:3, :3], axis=0)
    assert spacing == pytest.approx([*map(float, flair[0].PixelSpacing), spacing[2]], abs=1e-4)


async def test_a_later_view_of_an_inferred_study_gets_its_own_finding(
    client, accounts, running_worker
):
    """A lateral view stored after the PA view was inferred is inferred by a follow-up job
    that reads it alone: one finding per radiograph, none twice."""
    pacs, rad1, study_uid = accounts["pacs1"], accounts["rad1"], pydicom.uid.generate_uid()
    first = await upload(client, pacs, ("pa.dcm", chest_dx(128, seed=4, study_uid=study_uid)))
    [case_id] = first["case_ids"]
    case = await wait_for_status(client, rad1, case_id, "inferred", "failed")
    assert case["status"] == "inferred" and len(case["findings"]) == 1, case
    second = await upload(client, pacs, ("lat.dcm", chest_dx(128, seed=5, study_uid=study_uid)))
    assert second["case_ids"] == [case_id] and second["studies"][0]["inference_queued"]
    deadline = time.monotonic() + WAIT_S
    while len(case["findings"]) < 2 or case["status"] != "inferred":
        assert time.monotonic() < deadline, f"no finding for the lateral view: {case}"
        await asyncio.sleep(0.2)
        case = await wait_for_status(client, rad1, case_id, "inferred", "failed")
    instances = [i["id"] for series in case["series"] for i in series["instances"]]
    assert sorted(f["subject"] for f in case["findings"]) == sorted(instances)
    async with running_worker.session_factory() as session:
        jobs = (
            await session.scalars(
                select(InferenceJob).where(InferenceJob.case_id == uuid.UUID(case_id))
            )
        ).all()
        finding_jobs = set(
            (
                await session.scalars(
                    select(Finding.job_id).where(Finding.case_id == uuid.UUID(case_id))
                )
            ).all()
        )
    assert len(jobs) == 2 and {job.status for job in jobs} == {JobStatus.DONE}
    assert finding_jobs == {job.id for job in jobs}  # one finding from each job


async def test_triton_error_fails_the_case_with_the_reason(client, accounts, running_worker):
    """An image Triton refuses (larger than cxr_preprocess's max_pixels) fails at once: no
    retries for bad input, the reason on the case and an ``inference.failed`` audit entry."""
    pacs, admin = accounts["pacs1"], accounts["admin1"]
    side = int(TINY_MAX_PIXELS**0.5) + 8
    [case_id] = (await upload(client, pacs, ("big.dcm", chest_dx(side, seed=5))))["case_ids"]
    case = await wait_for_status(client, admin, case_id, "inferred", "failed")
    assert case["status"] == "failed"
    assert "rejected the input" in case["status_reason"], case["status_reason"]
    assert case["findings"] == []
    failed = [e for e in case["history"] if e["action"] == "inference.failed"]
    assert len(failed) == 1
    assert failed[0]["details"]["code"] == "inference_bad_input"
    assert failed[0]["details"]["attempts"] == 1
    job = await job_of(client.app.state.settings, case_id)
    assert job.status == JobStatus.FAILED and job.attempts == 1


class CamWritesFail:
    """An object store whose first ``failures`` CAM image writes fail (a full disk, say)."""

    def __init__(self, store: ObjectStore, failures: int) -> None:
        self.store, self.failures = store, failures

    async def put(self, key: str, data: bytes, **options: Any) -> Any:
        if key.endswith("cams.png") and self.failures > 0:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        return await self.store.put(key, data, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_cam_image_that_cannot_be_stored_leaves_no_finding_and_is_retried(
    client, accounts, settings
):
    """A finding is never committed without the CAM image it names: a failed write leaves the
    job pending for a retry with nothing written, and the retry stores both."""
    store = build_store(settings)
    engine = create_engine(settings)
    try:
        worker = Worker(settings, create_session_factory(engine), CamWritesFail(store, failures=1))
        [case_id] = (await upload(client, accounts["pacs1"], ("pa.dcm", chest_dx(64, seed=3))))[
            "case_ids"
        ]
        assert await worker.run_once() is True
        job = await job_of(settings, case_id)
        assert (job.status, job.attempts, job.error_code) == (
            JobStatus.PENDING,
            1,
            "internal_error",
        )
        async with worker.session_factory() as session:
            count = select(func.count(Finding.id)).where(Finding.case_id == uuid.UUID(case_id))
            assert await session.scalar(count) == 0

        await asyncio.sleep(settings.job_backoff_s + 0.2)
        assert await worker.run_once() is True
        job = await job_of(settings, case_id)
        assert (job.status, job.attempts) == (JobStatus.DONE, 2)
        async with worker.session_factory() as session:
            [finding] = (
                await session.scalars(select(Finding).where(Finding.case_id == uuid.UUID(case_id)))
            ).all()
        cams = Image.open(BytesIO(await store.get(finding.artifacts["cams"])))
        assert cams.mode == "L" and cams.size[1] % 14 == 0
        await worker.triton.close()
    finally:
        await engine.dispose()


def head_ct_files(count: int, *, tilt: float | None = None) -> list[tuple[str, bytes]]:
    """A synthetic axial head CT series (64² slices 1 mm apart), in shuffled order."""
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    files = []
    for index in np.random.default_rng(7).permutation(count):
        payload = ct_slice(64, study_uid=study, series_uid=series, index=int(index), seed=5)
        if tilt is not None:
            ds = pydicom.dcmread(BytesIO(payload))
            ds.GantryDetectorTilt = tilt
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            payload = buffer.getvalue()
        files.append((f"slice-{index}.dcm", payload))
    return files


async def test_head_ct_series_upload_infer_review_sign_off(client, accounts, running_worker):
    pacs, rad1 = accounts["pacs1"], accounts["rad1"]
    files = head_ct_files(10)
    first = await upload(client, pacs, *files[:6])
    assert first["studies"][0]["pipeline"] == "ct_head"
    second = await upload(client, pacs, *files[6:])  # the rest of the series, later
    assert second["case_ids"] == first["case_ids"]
    [case_id] = first["case_ids"]

    case = await wait_for_status(client, rad1, case_id, "inferred", "failed")
    assert case["status"] == "inferred", case
    [finding] = case["findings"]  # one finding for the series, read whole
    assert (finding["kind"], finding["subject"], finding["instance_id"]) == (
        "classification",
        "volume",
        None,
    )
    assert finding["model"]["name"] == "ct_head"
    assert finding["model"]["network"] == "ct_head_net"
    assert finding["views"] == ["slice_heatmap"] and finding["cam_labels"] == []
    labels = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    assert list(finding["probabilities"]) == labels
    assert sorted(finding["labels"]) == sorted(
        label for label, p in finding["probabilities"].items() if p >= finding["thresholds"][label]
    )

    # Per-slice results: every slice once, in position order, the study level their maximum.
    base = f"/api/cases/{case_id}/findings/{finding['id']}/per-slice"
    response = await client.get(base, headers=rad1.headers)
    assert response.status_code == 200, response.text
    table = response.json()
    assert table["labels"] == labels and table["spacing_mm"] == [1.0, 0.5, 0.5]
    slices = table["slices"]
    assert [row["index"] for row in slices] == list(range(10))
    assert [row["position_mm"] for row in slices] == [float(z) for z in range(10)]
    assert len({row["instance_id"] for row in slices}) == 10
    for label in labels:
        highest = max(row["probabilities"][label] for row in slices)
        assert finding["probabilities"][label] == pytest.approx(highest, abs=1e-6)
    # The instance behind slice 3 is the slice uploaded at z = 3 mm.
    metadata = await client.get(
        f"/api/cases/{case_id}/instances/{slices[3]['instance_id']}/metadata",
        headers=rad1.headers,
    )
    assert metadata.json()["00200032"]["Value"][2] == 3.0

    # A slice under a chosen window, and its heat map.
    brain = await client.get(f"{base}/3/image", params={"window": "brain"}, headers=rad1.headers)
    bone = await client.get(f"{base}/3/image", params={"window": "bone"}, headers=rad1.headers)
    assert brain.status_code == bone.status_code == 200, (brain.text, bone.text)
    brain_px = np.asarray(Image.open(BytesIO(brain.content)))
    bone_px = np.asarray(Image.open(BytesIO(bone.content)))
    assert brain_px.shape == bone_px.shape == (64, 64)
    assert brain_px[32, 32] > bone_px[32, 32]  # brain (35 HU) is bright under the brain window
    heatmap = await client.get(f"{base}/3/heatmap", headers=rad1.headers)
    assert heatmap.status_code == 200 and heatmap.headers["content-type"] == "image/png"
    heat = np.asarray(Image.open(BytesIO(heatmap.content)))
    assert heat.ndim == 2 and heat.shape[0] == heat.shape[1] and heat.dtype == np.uint8
    for path, params, status, code in (
        (f"{base}/10/image", {}, 404, "slice_not_found"),
        (f"{base}/3/image", {"window": "lung-ish"}, 400, "invalid_window"),
        (f"{base}/3/image", {"window": "brain", "window_width": "80"}, 400, "invalid_window"),
    ):
        response = await client.get(path, params=params, headers=rad1.headers)
        assert (response.status_code, response.json()["code"]) == (status, code), response.text

    # Review as for the chest model: an edit of the label set, then sign-off.
    await claim(client, rad1, case_id)
    response = await decide(client, rad1, case_id, finding["id"], action="edit", labels=["x"],
                            reason="no such label")  # fmt: skip
    assert response.status_code == 400 and response.json()["code"] == "invalid_labels"
    response = await decide(
        client, rad1, case_id, finding["id"], action="edit", labels=["any", "subdural"],
        reason="thin subdural collection along the left convexity",
    )  # fmt: skip
    assert response.status_code == 201, response.text
    version = (await client.get(f"/api/cases/{case_id}", headers=rad1.headers)).json()["version"]
    response = await client.post(
        f"/api/cases/{case_id}/sign-off", json={"version": version}, headers=rad1.headers
    )
    assert response.status_code == 200 and response.json()["status"] == "signed_off", response.text
    async with running_worker.session_factory() as session:
        jobs = (await session.scalars(select(InferenceJob))).all()
        assert [(job.pipeline, job.status) for job in jobs] == [("ct_head", JobStatus.DONE)]
        completed = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "inference.completed")
            )
        ).all()
    assert [json.loads(entry.details)["model"] for entry in completed] == ["ct_head"]


async def test_a_tilted_head_ct_fails_with_the_reason(client, accounts, running_worker):
    body = await upload(client, accounts["pacs1"], *head_ct_files(4, tilt=12.0))
    [case_id] = body["case_ids"]
    case = await wait_for_status(client, accounts["rad1"], case_id, "failed", "inferred")
    assert case["status"] == "failed" and case["findings"] == []
    assert "gantry tilt of 12 degrees" in case["status_reason"], case
