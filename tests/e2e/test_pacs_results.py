"""Signed-off results reach a real PACS under the patient's own study.

A real Triton (tiny networks) infers; the job worker runs on a thread of its own, as
``medvision worker`` would, and sends the results; two real Orthanc servers are the
destinations, one by C-STORE and one by STOW-RS. The original image is in the PACS first
(as it would be: the PACS sent it to MedVision), and after sign-off the SR (chest X-ray) and
the SEG + SR (brain MRI, a DICOM MR series) must land in that same study: the original
Study Instance UID, Patient ID and name, referencing the original image UIDs. SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, StoragePresentationContexts

from control.config import Settings
from tests.conftest import SECRET
from tests.control.results import dciodvfy_lines
from tests.e2e.test_inference_review import (  # noqa: F401  (shared fixtures)
    running_worker,
    triton,
    wait_for_status,
)
from tests.fixtures.dx import chest_dx
from tests.fixtures.mr_series import brats_phantom_study
from tests.fixtures.orthanc import Orthanc, start_orthanc
from tests.fixtures.uploads import dicom_bytes, upload

WAIT_S = 60.0
PATIENT = {"PatientID": "MRN-E2E-0815", "PatientName": "Pacs^Petra", "AccessionNumber": "ACC-E2E"}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Orthanc]]:
    """Two Orthanc PACS: ``c-store`` and ``stow-rs`` destinations."""
    with (
        start_orthanc(tmp_path_factory.mktemp("orthanc-dimse"), aet="DIMSEPACS") as dimse,
        start_orthanc(tmp_path_factory.mktemp("orthanc-web"), aet="WEBPACS") as web,
    ):
        yield dimse, web


@pytest.fixture
def settings(database_url: str, tmp_path: Path, triton, pacs) -> Settings:  # noqa: F811
    dimse, web = pacs
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        secret_key=SECRET,
        triton_url=triton.url,
        triton_required=False,
        triton_timeout_s=60,
        worker_enabled=False,
        worker_poll_s=0.2,
        job_backoff_s=0.3,
        job_backoff_max_s=2.0,
        job_lease_s=30.0,
        results_organization="Test Hospital",
        dicom_destinations=[
            {
                "name": "dimse-pacs",
                "type": "c-store",
                "host": "127.0.0.1",
                "port": dimse.dicom_port,
                "ae_title": dimse.aet,
            },
            {"name": "web-pacs", "type": "stow-rs", "url": web.dicomweb_url},
        ],
    )


def identified(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """``datasets`` with the test patient's identifying header."""
    for ds in datasets:
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
    return datasets


def c_store(pacs: Orthanc, datasets: list[pydicom.Dataset]) -> None:
    """Put the original images into the PACS, as the modality would have."""
    ae = AE(ae_title="MODALITY")
    ae.requested_contexts = StoragePresentationContexts[:120]
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.aet)
    assert assoc.is_established
    try:
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()


async def wait_sent(client, account, case_id: str, expected: int) -> list[dict]:
    deadline = time.monotonic() + WAIT_S
    while True:
        response = await client.get(f"/api/cases/{case_id}/exports", headers=account.headers)
        assert response.status_code == 200, response.text
        exports = response.json()
        if len(exports) == expected and all(e["status"] == "sent" for e in exports):
            return exports
        failed = [e for e in exports if e["status"] in ("failed", "skipped")]
        assert not failed, failed
        assert time.monotonic() < deadline, f"exports not sent: {exports}"
        await asyncio.sleep(0.2)


async def review_and_sign_off(client, rad, case_id: str) -> dict:
    case = await wait_for_status(client, rad, case_id, "inferred", "failed")
    assert case["status"] == "inferred", case
    assert (await client.post(f"/api/cases/{case_id}/claim", headers=rad.headers)).is_success
    for finding in case["findings"]:
        response = await client.post(
            f"/api/cases/{case_id}/findings/{finding['id']}/decisions",
            json={"action": "accept", "note": "agree"},
            headers=rad.headers,
        )
        assert response.status_code == 201, response.text
    version = (await client.get(f"/api/cases/{case_id}", headers=rad.headers)).json()["version"]
    response = await client.post(
        f"/api/cases/{case_id}/sign-off",
        json={"version": version, "note": "reviewed"},
        headers=rad.headers,
    )
    assert response.status_code == 200, response.text
    return case


def pacs_objects(pacs: Orthanc, study_uid: str) -> dict[str, pydicom.Dataset]:
    """Every instance the PACS files under ``study_uid``, by SOP Instance UID."""
    objects = {}
    for record in pacs.instances_of_study(study_uid):
        ds = pydicom.dcmread(io.BytesIO(pacs.instance_file(record["ID"])))
        objects[str(ds.SOPInstanceUID)] = ds
    return objects


def assert_valid(ds: pydicom.Dataset, path: Path) -> None:
    """dciodvfy finds no error in the object as the PACS stored it."""
    ds.save_as(path, enforce_file_format=True)
    errors = [line for line in dciodvfy_lines(path) if line.startswith("Error")]
    assert errors == [], errors


def assert_filed_under_the_patient(ds: pydicom.Dataset, study_uid: str) -> None:
    assert ds.StudyInstanceUID == study_uid
    assert ds.PatientID == PATIENT["PatientID"]
    assert str(ds.PatientName) == PATIENT["PatientName"]
    assert ds.AccessionNumber == PATIENT["AccessionNumber"]
    assert ds.get("PatientIdentityRemoved", "NO") == "NO"


@pytest.mark.usefixtures("running_worker")
async def test_chest_xray_sr_reaches_both_pacs_under_the_original_study(
    client, accounts, pacs, tmp_path
):
    pacs1, rad1 = accounts["pacs1"], accounts["rad1"]
    study_uid = generate_uid()
    chest = chest_dx(128, seed=5, study_uid=study_uid, patient_id=PATIENT["PatientID"])
    [original] = identified([pydicom.dcmread(io.BytesIO(chest))])
    for peer in pacs:
        c_store(peer, [original])

    body = await upload(client, pacs1, ("chest.dcm", dicom_bytes(original)))
    [case_id] = body["case_ids"]
    await review_and_sign_off(client, rad1, case_id)
    exports = await wait_sent(client, rad1, case_id, expected=2)
    [sop_uid] = {e["sop_instance_uid"] for e in exports}

    for peer in pacs:
        filed = pacs_objects(peer, study_uid)
        assert set(filed) == {original.SOPInstanceUID, sop_uid}, peer.aet
        sr = filed[sop_uid]
        assert sr.Modality == "SR" and sr.VerificationFlag == "VERIFIED"
        assert_filed_under_the_patient(sr, study_uid)
        assert_valid(sr, tmp_path / f"sr-{peer.aet}.dcm")
        [evidence] = sr.CurrentRequestedProcedureEvidenceSequence
        [series] = evidence.ReferencedSeriesSequence
        assert series.SeriesInstanceUID == original.SeriesInstanceUID
        assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (original.SOPInstanceUID)
        assert sr.VerifyingObserverSequence[0].VerifyingOrganization == "Test Hospital"
        assert study_uid in peer.study_instance_uids()


@pytest.mark.usefixtures("running_worker")
async def test_brain_mri_seg_and_sr_reach_the_pacs_under_the_original_study(
    client, accounts, pacs, tmp_path
):
    pacs1, rad1 = accounts["pacs1"], accounts["rad1"]
    study_uid = generate_uid()
    study = {kind: identified(series) for kind, series in brats_phantom_study(study_uid).items()}
    flair = study["FLAIR"]
    dimse, _web = pacs
    c_store(dimse, flair)

    files = [
        (f"{kind}-{index}.dcm", dicom_bytes(ds))
        for kind, series in study.items()
        for index, ds in enumerate(series)
    ]
    body = await upload(client, pacs1, *files)
    [case_id] = body["case_ids"]
    await review_and_sign_off(client, rad1, case_id)
    exports = await wait_sent(client, rad1, case_id, expected=4)
    by_kind = {e["kind"]: e["sop_instance_uid"] for e in exports}

    for peer in pacs:
        filed = pacs_objects(peer, study_uid)
        seg_ds, sr_ds = filed[by_kind["seg"]], filed[by_kind["sr"]]
        for name, ds in (("seg", seg_ds), ("sr", sr_ds)):
            assert_filed_under_the_patient(ds, study_uid)
            assert_valid(ds, tmp_path / f"{name}-{peer.aet}.dcm")
        seg = hd.seg.Segmentation.from_dataset(seg_ds)
        assert seg.number_of_segments == 3
        # The SEG stands on the original FLAIR series and its frame of reference.
        [referenced] = seg_ds.ReferencedSeriesSequence
        assert referenced.SeriesInstanceUID == flair[0].SeriesInstanceUID
        referenced_sops = {
            item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence
        }
        assert referenced_sops <= {ds.SOPInstanceUID for ds in flair}
        assert seg_ds.FrameOfReferenceUID == flair[0].FrameOfReferenceUID
        # The SR references the SEG by its own UID.
        evidence = {
            item.ReferencedSOPInstanceUID
            for study_item in sr_ds.CurrentRequestedProcedureEvidenceSequence
            for series_item in study_item.ReferencedSeriesSequence
            for item in series_item.ReferencedSOPSequence
        }
        assert by_kind["seg"] in evidence
