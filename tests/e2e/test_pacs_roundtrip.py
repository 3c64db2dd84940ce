"""The PACS round trip on the processes a hospital runs, as ``make run`` starts them.

Triton (tiny synthetic networks), ``medvision serve`` (API + worker) and ``medvision dicom
listen`` run as real processes on one data directory; DCMTK's ``storescu`` sends a chest
radiograph to the listener, ``dicomweb-client`` stores a second study through STOW-RS and
reads both back through QIDO-RS and WADO-RS, a radiologist signs the first case off, and a
real Orthanc (the destination) files the SR under the patient's original study. SQLite
(the processes share one file database; the PostgreSQL paths are covered by the in-process
tests of each part).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from control.triton.server import find_free_ports
from tests.fixtures.dx import chest_dx
from tests.fixtures.orthanc import Orthanc, start_orthanc
from tests.fixtures.workstation_stack import WorkstationStack

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(shutil.which("storescu") is None, reason="needs DCMTK's storescu"),
]

PATIENT_ID = "MRN-ROUNDTRIP-42"
CALLING_AE = "STORESCU"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with start_orthanc(tmp_path_factory.mktemp("orthanc"), aet="HOSPITALPACS") as pacs:
        yield pacs


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, orthanc: Orthanc
) -> Iterator[tuple[WorkstationStack, int]]:
    """The stack and the DICOM listener's port."""
    (dicom_port,) = find_free_ports(1)
    destinations = [
        {
            "name": "hospital-pacs",
            "type": "c-store",
            "host": "127.0.0.1",
            "port": orthanc.dicom_port,
            "ae_title": orthanc.aet,
        }
    ]
    scratch = tmp_path_factory.mktemp("roundtrip")
    stack = WorkstationStack(
        scratch,
        extra_env={
            "MEDVISION_DICOM_PORT": str(dicom_port),
            "MEDVISION_DICOM_ALLOWED_AES": json.dumps({CALLING_AE: "e2e-pacs"}),
            "MEDVISION_DICOM_DESTINATIONS": json.dumps(destinations),
            "MEDVISION_WORKER_POLL_S": "0.2",
        },
    )
    with stack:
        log = (scratch / "listener.log").open("wb")
        listener = subprocess.Popen(
            [*stack.command(), "dicom", "listen", "--port", str(dicom_port)],
            env=stack.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            _wait_for_echo(dicom_port, listener, scratch / "listener.log")
            yield stack, dicom_port
        finally:
            listener.terminate()
            listener.wait(timeout=60)


def _wait_for_echo(port: int, listener: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        echo = subprocess.run(
            ["echoscu", "-aet", CALLING_AE, "-aec", "MEDVISION", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if echo.returncode == 0:
            return
        assert listener.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def test_storescu_stow_qido_wado_and_the_sr_back_in_the_pacs(
    stack: tuple[WorkstationStack, int], orthanc: Orthanc, tmp_path: Path
) -> None:
    from dicomweb_client import DICOMwebClient

    stack, dicom_port = stack
    # 1. The modality's study reaches the PACS and, by C-STORE (storescu), MedVision.
    study_uid = generate_uid()
    original = pydicom.dcmread(
        io.BytesIO(chest_dx(128, seed=11, study_uid=study_uid, patient_id=PATIENT_ID))
    )
    path = tmp_path / "chest.dcm"
    original.save_as(path, enforce_file_format=True)
    orthanc_store = subprocess.run(
        ["storescu", "-aet", "MODALITY", "-aec", orthanc.aet, "127.0.0.1",
         str(orthanc.dicom_port), str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert orthanc_store.returncode == 0, orthanc_store.stderr
    sent = subprocess.run(
        ["storescu", "-aet", CALLING_AE, "-aec", "MEDVISION", "127.0.0.1",
         str(dicom_port), str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr

    # 2. It lands as a case, and the worker gives it findings from Triton.
    web = DICOMwebClient(
        f"{stack.base_url}/dicomweb",
        headers={"Authorization": f"Bearer {stack.token(stack.integration)}"},
    )
    deadline = time.monotonic() + 120
    while not (found := web.search_for_studies()):
        assert time.monotonic() < deadline, "the C-STORE study never appeared"
        time.sleep(0.5)
    stored_study_uid = found[0]["0020000D"]["Value"][0]
    assert stored_study_uid != study_uid  # pseudonymous
    with stack.client(stack.admin) as http:
        studies = http.get("/api/cases", params={"limit": 200}).json()["items"]
    [item] = [c for c in studies if c["study"]["study_uid"] == stored_study_uid]
    case = stack.wait_read(item["id"])
    assert case["status"] == "inferred", case
    assert case["findings"] and case["findings"][0]["model"]["name"] == "cxr"

    # 3. A second study through STOW-RS; QIDO finds both, WADO serves them.
    second = pydicom.dcmread(io.BytesIO(chest_dx(96, seed=12, patient_id="MRN-STOW-7")))
    web.store_instances([second])
    studies = web.search_for_studies()
    assert len(studies) == 2
    series = web.search_for_series(stored_study_uid)
    [instance] = web.search_for_instances(stored_study_uid, series[0]["0020000E"]["Value"][0])
    retrieved = web.retrieve_instance(
        stored_study_uid,
        series[0]["0020000E"]["Value"][0],
        instance["00080018"]["Value"][0],
    )
    assert retrieved.PatientID != PATIENT_ID  # de-identified
    assert (retrieved.pixel_array == original.pixel_array).all()  # pixels as sent

    # 4. Sign-off: the SR goes back to the PACS, filed under the original study.
    rad = stack.radiologist
    with stack.client(rad) as http:
        assert http.post(f"/api/cases/{case['id']}/claim").is_success
        for finding in case["findings"]:
            decided = http.post(
                f"/api/cases/{case['id']}/findings/{finding['id']}/decisions",
                json={"action": "accept"},
            )
            assert decided.status_code == 201, decided.text
        version = http.get(f"/api/cases/{case['id']}").json()["version"]
        signed = http.post(f"/api/cases/{case['id']}/sign-off", json={"version": version})
        assert signed.status_code == 200, signed.text
        deadline = time.monotonic() + 120
        while True:
            exports = http.get(f"/api/cases/{case['id']}/exports").json()
            if exports and all(e["status"] == "sent" for e in exports):
                break
            assert not [e for e in exports if e["status"] in ("failed", "skipped")], exports
            assert time.monotonic() < deadline, exports
            time.sleep(0.3)
    [export] = exports
    filed = {
        record["MainDicomTags"]["SOPInstanceUID"]: record
        for record in orthanc.instances_of_study(study_uid)
    }
    assert set(filed) == {original.SOPInstanceUID, export["sop_instance_uid"]}
    sr = pydicom.dcmread(io.BytesIO(orthanc.instance_file(filed[export["sop_instance_uid"]]["ID"])))
    assert sr.Modality == "SR" and sr.VerificationFlag == "VERIFIED"
    assert sr.StudyInstanceUID == study_uid and sr.PatientID == PATIENT_ID
