"""Signed-off cases for the result export tests, and a flaky C-STORE peer.

Cases come in through the upload API with a known, synthetic identifying header; the tests
then write what the job worker would have written (the job done, a finding, the case
``inferred``) to the database, and a radiologist decides and signs off through the API.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select

from control.config import Settings
from control.db.models import (
    Case,
    CaseStatus,
    Finding,
    FindingKind,
    InferenceJob,
    Instance,
    JobStatus,
    Series,
)
from control.served.artefacts import SliceArtefacts
from control.served.ct_head import SliceResult, SliceTable
from medvision_contract.labels import CT_HEAD_LABELS
from tests.conftest import SECRET
from tests.fixtures.ct import ct_slice
from tests.fixtures.dx import chest_dx
from tests.fixtures.uploads import dicom_bytes, upload

#: A synthetic identifying header, distinctive enough to grep storage and logs for.
ORIGINAL = {
    "PatientID": "MRN-7731-PACSTEST",
    "PatientName": "Testpatient^Wilhelmina",
    "PatientBirthDate": "19520317",
    "AccessionNumber": "ACC-55-REIDTEST",
    "StudyID": "STUDY-REIDTEST",
    "StudyTime": "081522",
    "ReferringPhysicianName": "Referrer^Otto",
}
PROBABILITIES = {"Atelectasis": 0.12, "Effusion": 0.81, "Nodule": 0.34}


def identified_dx(study_uid: str | None = None) -> pydicom.Dataset:
    """A chest DX radiograph carrying :data:`ORIGINAL` and fresh original UIDs."""
    ds = pydicom.dcmread(
        io.BytesIO(chest_dx(64, study_uid=study_uid or generate_uid(), patient_id="x"))
    )
    for keyword, value in ORIGINAL.items():
        setattr(ds, keyword, value)
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [0.14, 0.14]
    return ds


def original_needles(ds: pydicom.Dataset) -> list[str]:
    """The original identifiers of ``ds`` that must never be stored or logged in plaintext."""
    return [
        ORIGINAL["PatientID"],
        ORIGINAL["AccessionNumber"],
        ORIGINAL["StudyID"],
        "Wilhelmina",
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
    ]


def destination_settings(
    database_url: str, tmp_path: Path, destinations: list[dict[str, Any]], **extra: Any
) -> Settings:
    """Test settings with ``destinations`` and fast retries (0.2 s first backoff)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "secret_key": SECRET,
        "log_json": True,
        "triton_required": False,
        "worker_enabled": False,
        # Long enough that a loaded CI machine cannot let the backoff pass between a failed
        # attempt and the test's look at it (0.2 s did once); short enough to wait out.
        "job_backoff_s": 1.5,
        "job_backoff_max_s": 3.0,
        "job_lease_s": 30.0,
        "result_send_timeout_s": 5.0,
        "dicom_destinations": destinations,
        **extra,
    }
    return Settings(**values)


def _classification(case: Case, job: InferenceJob, **fields: Any) -> Finding:
    """A classification finding of ``job`` as the worker writes it (fixed provenance)."""
    return Finding(
        id=uuid.uuid4(),
        case_id=case.id,
        job_id=job.id,
        kind=FindingKind.CLASSIFICATION,
        model_version="test-1",
        synthetic_model=True,
        volumes_ml={},
        input_sha256="a" * 64,
        output_sha256="b" * 64,
        latency_ms=1.0,
        decisions=[],
        **fields,
    )


async def inferred_cxr_case(
    app: Any, client: Any, accounts: Any, ds: pydicom.Dataset
) -> tuple[str, str]:
    """Upload ``ds`` and give its case one classification finding on that image, as the
    worker would; ``(case id, finding id)``."""
    body = await upload(client, accounts["pacs1"], ("chest.dcm", dicom_bytes(ds)))
    [case_id] = body["case_ids"]
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        assert case is not None
        job = await session.scalar(select(InferenceJob).where(InferenceJob.case_id == case.id))
        assert job is not None
        job.status, job.attempts = JobStatus.DONE, 1
        instance = await session.scalar(
            select(Instance)
            .join(Series, Series.id == Instance.series_id)
            .where(Series.study_id == case.study_id)
        )
        assert instance is not None
        finding = _classification(
            case,
            job,
            subject=str(instance.id),
            instance_id=instance.id,
            model_name="cxr",
            network_name="cxr_net",
            training_run_id="run-42",
            labels=["Effusion"],
            probabilities=dict(PROBABILITIES),
            thresholds=dict.fromkeys(PROBABILITIES, 0.5),
            artifacts={},
        )
        session.add(finding)
        case.status = CaseStatus.INFERRED
        await session.commit()
        return case_id, str(finding.id)


async def sign_off(client: Any, rad: Any, case_id: str, decisions: dict[str, dict]) -> None:
    """Claim ``case_id`` as ``rad``, record ``decisions`` (finding id -> body), sign off."""
    response = await client.post(f"/api/cases/{case_id}/claim", headers=rad.headers)
    assert response.status_code == 200, response.text
    for finding_id, body in decisions.items():
        response = await client.post(
            f"/api/cases/{case_id}/findings/{finding_id}/decisions", json=body, headers=rad.headers
        )
        assert response.status_code == 201, response.text
    version = (await client.get(f"/api/cases/{case_id}", headers=rad.headers)).json()["version"]
    response = await client.post(
        f"/api/cases/{case_id}/sign-off",
        json={"version": version, "note": "reviewed"},
        headers=rad.headers,
    )
    assert response.status_code == 200, response.text


class FlakyStoreSCP:
    """A pynetdicom storage SCP on loopback that answers C-STORE with the statuses it is
    given, in order (then success), and keeps every dataset it received."""

    def __init__(self, port: int, statuses: list[int] | None = None) -> None:
        self.port = port
        self.statuses = list(statuses or [])
        self.received: list[pydicom.Dataset] = []
        self.answered: list[int] = []
        self.calling_aes: list[str] = []
        #: Seconds each C-STORE takes before it is answered (a slow PACS).
        self.delay_s = 0.0
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        from pynetdicom import AE, StoragePresentationContexts, evt

        ae = AE(ae_title="FLAKY")
        ae.supported_contexts = StoragePresentationContexts
        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_store(self, event: Any) -> int:
        time.sleep(self.delay_s)
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.received.append(ds)
            self.calling_aes.append(str(event.assoc.requestor.ae_title).strip())
            status = self.statuses.pop(0) if self.statuses else 0x0000
            self.answered.append(status)
        return status

    @property
    def stored(self) -> list[pydicom.Dataset]:
        """The datasets answered with success."""
        return [ds for ds, status in zip(self.received, self.answered, strict=True) if not status]


async def plaintext_hits(settings: Settings, root: Path, needles: list[str]) -> list[str]:
    """Where any of ``needles`` appears in plaintext: files under ``root`` (the SQLite
    database and the data directory) and, on PostgreSQL, any row of any table (as text, and
    bytea as hex)."""
    hits = []
    encoded = [(needle, needle.encode()) for needle in needles]
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}: {text}" for text, raw in encoded if raw in data]
    if settings.is_postgres:
        from sqlalchemy import text

        from control.db.engine import create_engine

        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                tables = await connection.scalars(
                    text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'public'"
                    )
                )
                for table in list(tables):
                    rows = await connection.scalars(
                        text(f'SELECT CAST(t AS text) FROM "{table}" t')
                    )
                    dump = "\n".join(rows)
                    for needle, raw in encoded:
                        if needle in dump or raw.hex() in dump:
                            hits.append(f"{table}: {needle}")
        finally:
            await engine.dispose()
    return hits


def identified_head_ct(count: int = 3) -> list[pydicom.Dataset]:
    """An axial head CT series carrying :data:`ORIGINAL` and fresh original UIDs."""
    study, series = generate_uid(), generate_uid()
    slices = []
    for index in range(count):
        ds = pydicom.dcmread(
            io.BytesIO(ct_slice(16, study_uid=study, series_uid=series, index=index))
        )
        for keyword, value in ORIGINAL.items():
            setattr(ds, keyword, value)
        slices.append(ds)
    return slices


async def inferred_ct_head_case(
    app: Any, client: Any, accounts: Any, slices: list[pydicom.Dataset]
) -> tuple[str, str]:
    """Upload ``slices`` and give their case the ``ct_head`` finding the worker would write
    (study-level probabilities and the per-slice table in the store); ``(case id, finding
    id)``."""
    files = [(f"ct-{i}.dcm", dicom_bytes(ds)) for i, ds in enumerate(slices)]
    body = await upload(client, accounts["pacs1"], *files)
    [case_id] = body["case_ids"]
    labels = list(CT_HEAD_LABELS)
    probabilities = {label: 0.9 if label in ("any", "subdural") else 0.1 for label in labels}
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        assert case is not None
        job = await session.scalar(select(InferenceJob).where(InferenceJob.case_id == case.id))
        assert job is not None and job.pipeline == "ct_head"
        job.status, job.attempts = JobStatus.DONE, 1
        instances = (
            await session.scalars(
                select(Instance)
                .join(Series, Series.id == Instance.series_id)
                .where(Series.study_id == case.study_id)
            )
        ).all()
        table = SliceTable(
            labels=labels,
            thresholds=dict.fromkeys(labels, 0.5),
            spacing_mm=[1.0, 0.5, 0.5],
            slices=[
                SliceResult(k, str(instance.id), float(k), probabilities, ["any", "subdural"])
                for k, instance in enumerate(instances)
            ],
        )
        slices_key = f"derived/cases/{case.id}/jobs/{job.id}/slices.json"
        await app.state.store.put(slices_key, table.to_json(), content_type="application/json")
        finding = _classification(
            case,
            job,
            subject="volume",
            instance_id=None,
            model_name="ct_head",
            network_name="ct_head_net",
            training_run_id="run-43",
            labels=["any", "subdural"],
            probabilities=probabilities,
            thresholds=dict.fromkeys(labels, 0.5),
            artifacts=SliceArtefacts(slices=slices_key, heatmaps="unused").stored(),
        )
        session.add(finding)
        case.status = CaseStatus.INFERRED
        await session.commit()
        return case_id, str(finding.id)
