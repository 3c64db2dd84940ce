"""Routing: which pipeline a study goes to, as a pure function and through the upload API.

The API tests run on SQLite and on PostgreSQL and need no Triton server: ingest only queues
jobs (the worker is disabled in the test settings).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from control.config import Settings
from control.db.models import InferenceJob, Instance, Series, Study
from control.dicom.nifti import NIFTI_SOP_CLASS
from control.served.base import RoutingRules
from control.served.registry import route_study
from medvision_contract.served import BRATS as BRATS_CONTRACT
from medvision_contract.served import CXR as CXR_CONTRACT
from tests.conftest import SECRET
from tests.fixtures.dx import chest_dx
from tests.fixtures.mr_series import brats_phantom_study
from tests.fixtures.uploads import four_channel_nifti, series_files, upload

CXR, BRATS = CXR_CONTRACT.name, BRATS_CONTRACT.name

# ---------------------------------------------------------------------------------------------
# route_study on hand-built rows
# ---------------------------------------------------------------------------------------------


def _instance(sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1") -> Instance:
    uid = f"2.25.{uuid.uuid4().int}"
    return Instance(
        id=uuid.uuid4(),
        sop_instance_uid=uid,
        sop_class_uid=sop_class,
        object_key=f"studies/x/{uid}.dcm",
        sha256="0" * 64,
        size_bytes=1,
    )


def _series(
    modality: str,
    body_part: str | None = None,
    sequence_type: str | None = None,
    instances: int = 1,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1",
) -> Series:
    return Series(
        id=uuid.uuid4(),
        series_uid=f"2.25.{uuid.uuid4().int}",
        modality=modality,
        body_part=body_part,
        sequence_type=sequence_type,
        instances=[_instance(sop_class) for _ in range(instances)],
    )


def _study(*series: Series) -> Study:
    return Study(study_uid=f"2.25.{uuid.uuid4().int}", pseudo_patient_id="p", series=list(series))


def _brain(*sequences: str) -> list[Series]:
    return [_series("MR", "BRAIN", sequence, instances=3) for sequence in sequences]


RULES = RoutingRules()


@pytest.mark.parametrize(
    ("modality", "body_part"),
    [("DX", "CHEST"), ("CR", "CHEST"), ("DX", None), ("dx", " chest "), ("DX", "THORAX")],
)
def test_chest_radiographs_route_to_cxr(modality, body_part):
    series = _series(modality, body_part, instances=2)
    route = route_study(_study(series), RULES)
    assert route.pipeline == CXR
    assert route.instances == series.instances
    assert route.channels == {} and route.volume is None


@pytest.mark.parametrize(
    ("modality", "body_part", "reason"),
    [
        ("DX", "KNEE", "no model for DX studies"),
        ("CT", "CHEST", "no model for CT studies"),
        ("MR", "KNEE", "no model for MR studies"),
        ("US", None, "no model for US studies"),
    ],
)
def test_other_studies_get_no_model_with_reason(modality, body_part, reason):
    route = route_study(_study(_series(modality, body_part)), RULES)
    assert route.pipeline is None
    assert route.reason == reason
    assert route.instances == [] and route.channels == {} and route.volume is None


def test_study_without_series_gets_no_model():
    route = route_study(_study(), RULES)
    assert route.pipeline is None
    assert route.reason == "no model for none studies"


def test_a_route_without_its_inferred_subjects_keeps_only_the_new_images():
    series = _series("DX", "CHEST", instances=3)
    route = route_study(_study(series), RULES)
    first, *others = series.instances
    assert route.subjects == [str(instance.id) for instance in series.instances]
    rest = route.without({str(first.id), "unrelated"})
    assert rest.pipeline == CXR and rest.instances == others
    assert route.instances == series.instances  # the original route is unchanged
    done = route.without(set(route.subjects))
    assert done.pipeline is None and done.instances == []


def test_a_brats_route_has_one_subject_the_volume():
    route = route_study(_study(*_brain("T1", "T1ce", "T2", "FLAIR")), RULES)
    assert route.pipeline == BRATS and route.subjects == ["volume"]
    assert route.without({"some-instance-id"}) is route
    assert route.without({"volume"}).pipeline is None
    assert route_study(_study(_series("CT", "CHEST")), RULES).subjects == []


def test_only_the_chest_series_of_a_mixed_study_are_read():
    chest = _series("DX", "CHEST", instances=2)
    knee = _series("DX", "KNEE", instances=3)
    ct = _series("CT", "CHEST")
    route = route_study(_study(knee, chest, ct), RULES)
    assert route.pipeline == CXR
    assert route.instances == chest.instances


def test_body_parts_are_configurable():
    knee = _series("DX", "KNEE")
    assert route_study(_study(knee), RoutingRules()).pipeline is None
    knees = RoutingRules(chest_body_parts=frozenset({"KNEE"}))
    assert route_study(_study(knee), knees).pipeline == CXR
    assert route_study(_study(_series("DX", "CHEST")), knees).pipeline is None


def test_rules_come_from_settings_upper_cased():
    settings = Settings(
        secret_key=SECRET,
        route_chest_modalities=["dx"],
        route_chest_body_parts=["knee"],
        route_brain_body_parts=["Head"],
    )
    rules = RoutingRules.from_settings(settings)
    assert rules == RoutingRules(
        chest_modalities=frozenset({"DX"}),
        chest_body_parts=frozenset({"KNEE"}),
        brain_body_parts=frozenset({"HEAD"}),
    )
    assert route_study(_study(_series("CR", "KNEE")), rules).pipeline is None
    assert route_study(_study(_series("DX", "knee")), rules).pipeline == CXR
    assert route_study(_study(*_brain("T1", "T1ce", "T2", "FLAIR")), rules).pipeline is None


def test_default_settings_rules_accept_chest_lat():
    rules = RoutingRules.from_settings(Settings(secret_key=SECRET))
    assert route_study(_study(_series("DX", "CHEST_LAT")), rules).pipeline == CXR


def test_all_four_sequences_route_to_brats():
    series = _brain("FLAIR", "T2", "T1ce", "T1")
    route = route_study(_study(*series), RULES)
    assert route.pipeline == BRATS
    assert route.channels == {s.sequence_type: s for s in series}
    assert route.instances == [] and route.volume is None


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        (("T1", "T1ce", "T2"), "FLAIR"),
        (("T1", "T2", "FLAIR"), "T1ce"),
        (("T2",), "T1, T1ce, FLAIR"),
    ],
)
def test_incomplete_mr_brain_study_names_missing_sequences(present, missing):
    route = route_study(_study(*_brain(*present), _series("MR", "BRAIN", "other")), RULES)
    assert route.pipeline is None
    assert route.reason == f"MR brain study without {missing}"


def test_a_sequence_series_without_instances_does_not_count():
    empty_flair = _series("MR", "BRAIN", "FLAIR", instances=0)
    route = route_study(_study(*_brain("T1", "T1ce", "T2"), empty_flair), RULES)
    assert route.pipeline is None
    assert route.reason == "MR brain study without FLAIR"


def test_the_fullest_series_of_a_sequence_is_chosen():
    short_t1 = _series("MR", "BRAIN", "T1", instances=2)
    full_t1 = _series("MR", "BRAIN", "T1", instances=5)
    route = route_study(_study(short_t1, full_t1, *_brain("T1ce", "T2", "FLAIR")), RULES)
    assert route.pipeline == BRATS
    assert route.channels["T1"] is full_t1


def test_brain_series_of_another_body_part_are_ignored():
    series = _brain("T1", "T1ce", "T2")
    spine_flair = _series("MR", "SPINE", "FLAIR", instances=3)
    route = route_study(_study(*series, spine_flair), RULES)
    assert route.pipeline is None
    assert route.reason == "MR brain study without FLAIR"


def test_nifti_volume_routes_to_brats():
    volume = _series("MR", "BRAIN", "T1,T1ce,T2,FLAIR", sop_class=NIFTI_SOP_CLASS)
    route = route_study(_study(volume), RULES)
    assert route.pipeline == BRATS
    assert route.volume is volume.instances[0]
    assert route.channels == {}


# ---------------------------------------------------------------------------------------------
# Through the upload API
# ---------------------------------------------------------------------------------------------


async def _case(client, account, case_id: str) -> dict:
    response = await client.get(f"/api/cases/{case_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _jobs(app, case_id: str | None = None) -> list[InferenceJob]:
    async with app.state.session_factory() as session:
        query = select(InferenceJob).order_by(InferenceJob.created_at)
        if case_id is not None:
            query = query.where(InferenceJob.case_id == uuid.UUID(case_id))
        return list((await session.scalars(query)).all())


async def _audit(client, admin, action: str) -> list[dict]:
    response = await client.get("/api/audit", params={"action": action}, headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_chest_radiograph_upload_is_queued_for_cxr(app, client, accounts):
    admin = accounts["admin1"]
    body = await upload(client, accounts["pacs1"], ("chest.dcm", chest_dx(64)))
    [study] = body["studies"]
    [case_id] = body["case_ids"]
    assert study["pipeline"] == "cxr"
    assert study["status"] == "queued"
    assert "no_model" not in study["flags"]

    case = await _case(client, admin, case_id)
    assert (case["status"], case["pipeline"], case["status_reason"]) == ("queued", "cxr", None)
    [job] = await _jobs(app, case_id)
    assert (job.pipeline, job.status, job.attempts) == ("cxr", "pending", 0)
    assert job.max_attempts == app.state.settings.job_max_attempts

    [entry] = await _audit(client, admin, "inference.queued")
    assert entry["target_type"] == "case" and entry["target_id"] == case_id
    assert entry["actor"] == "pacs1"
    assert entry["details"] == {"job_id": str(job.id), "pipeline": "cxr"}


async def test_ct_upload_gets_no_model(app, client, accounts):
    admin = accounts["admin1"]
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    body = await upload(client, accounts["pacs1"], ("ct.dcm", ct))
    [study] = body["studies"]
    assert study["pipeline"] is None
    assert study["status"] == "received"
    assert "no_model" in study["flags"]

    case = await _case(client, admin, body["case_ids"][0])
    assert case["status"] == "received" and case["pipeline"] is None
    assert "no_model" in case["flags"]
    assert "CT" in case["status_reason"]
    assert await _jobs(app) == []
    assert await _audit(client, admin, "inference.queued") == []


async def test_mr_study_is_routed_once_its_last_sequence_arrives(app, client, accounts):
    admin, pacs = accounts["admin1"], accounts["pacs1"]
    phantom = brats_phantom_study()
    first = [f for seq in ("T1", "T1ce", "T2") for f in series_files(seq, phantom[seq])]
    body = await upload(client, pacs, *first)
    [study] = body["studies"]
    [case_id] = body["case_ids"]
    assert study["pipeline"] is None and study["status"] == "received"
    assert "no_model" in study["flags"]
    case = await _case(client, admin, case_id)
    assert "FLAIR" in case["status_reason"]
    assert "T1ce" not in case["status_reason"]
    assert await _jobs(app) == []

    body = await upload(client, pacs, *series_files("FLAIR", phantom["FLAIR"]))
    [study] = body["studies"]
    assert body["case_ids"] == [case_id]
    assert study["pipeline"] == "brats" and study["status"] == "queued"
    assert "no_model" not in study["flags"]
    case = await _case(client, admin, case_id)
    assert case["status"] == "queued" and case["status_reason"] is None
    assert "no_model" not in case["flags"]
    assert sorted(s["sequence_type"] for s in case["series"]) == ["FLAIR", "T1", "T1ce", "T2"]
    [job] = await _jobs(app, case_id)
    assert job.pipeline == "brats"


async def test_four_channel_nifti_is_queued_for_brats(app, client, accounts):
    body = await upload(client, accounts["pacs1"], ("brain.nii.gz", four_channel_nifti()))
    [study] = body["studies"]
    assert study["pipeline"] == "brats" and study["status"] == "queued"
    [job] = await _jobs(app, body["case_ids"][0])
    assert job.pipeline == "brats"


async def _job_count(app) -> int:
    async with app.state.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(InferenceJob)) or 0)


async def test_reuploads_never_queue_a_second_job(app, client, accounts):
    pacs = accounts["pacs1"]
    study_uid = "1.2.826.0.1.3680043.10.777.42"
    dx = chest_dx(64, study_uid=study_uid)
    body = await upload(client, pacs, ("chest.dcm", dx))
    assert await _job_count(app) == 1

    again = await upload(client, pacs, ("chest.dcm", dx), expected=200)
    assert again["case_ids"] == body["case_ids"]
    assert again["studies"][0]["new_instances"] == 0
    assert again["studies"][0]["status"] == "queued"
    assert await _job_count(app) == 1

    # A new image of the same study while its job is pending joins that job.
    more = await upload(client, pacs, ("lateral.dcm", chest_dx(64, seed=1, study_uid=study_uid)))
    assert more["case_ids"] == body["case_ids"]
    assert more["studies"][0]["new_instances"] == 1
    assert await _job_count(app) == 1
    assert len(await _audit(client, accounts["admin1"], "inference.queued")) == 1
