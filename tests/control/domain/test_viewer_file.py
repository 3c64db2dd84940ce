"""The stored DICOM file of an instance (getInstanceFile): bytes, visibility, errors, headers."""

from __future__ import annotations

import uuid
from io import BytesIO

import pydicom
from pydicom.data import get_testdata_file

from control.db.models import Case, Study
from tests.control.domain.test_viewer import (
    _assert_error,
    _frame_url,
    _instance,
    _mri_volume,
    _new_ct,
    _nifti_gz,
    _patch_case,
    _upload,
)


def _file_url(case_id: str, instance_id) -> str:
    return f"/api/cases/{case_id}/instances/{instance_id}/file"


async def _pseudonym(app, case_id: str) -> str:
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        study = await session.get(Study, case.study_id)
        return study.pseudo_patient_id


async def test_file_is_the_stored_deidentified_dicom(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))

    response = await client.get(_file_url(case_id, instance.id), headers=admin.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    assert response.content == await app.state.store.get(instance.object_key)
    dataset = pydicom.dcmread(BytesIO(response.content))
    assert dataset.SOPInstanceUID == instance.sop_instance_uid
    assert str(dataset.PatientName) == await _pseudonym(app, case_id)
    assert str(dataset.PatientName) != str(original.PatientName)
    assert dataset.pixel_array.shape == (128, 128)


async def test_file_of_a_foreign_or_unknown_instance_is_not_found(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    other_case = await _upload(client, admin, "ct.dcm", _new_ct())
    foreign = await _instance(app, other_case)

    response = await client.get(_file_url(case_id, foreign.id), headers=admin.headers)
    _assert_error(response, 404, "instance_not_found")
    response = await client.get(_file_url(case_id, uuid.uuid4()), headers=admin.headers)
    _assert_error(response, 404, "instance_not_found")
    response = await client.get(_file_url(str(uuid.uuid4()), foreign.id), headers=admin.headers)
    _assert_error(response, 404, "case_not_found")


async def test_file_follows_case_visibility_and_roles(app, client, accounts):
    admin, rad1, rad2 = accounts["admin1"], accounts["rad1"], accounts["rad2"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    url = _file_url(case_id, (await _instance(app, case_id)).id)
    assert (await client.get(url, headers=rad2.headers)).status_code == 200  # in the pool

    await _patch_case(client, admin, case_id, assignee_id=rad1.id)

    _assert_error(await client.get(url, headers=rad2.headers), 404, "case_not_found")
    assert (await client.get(url, headers=rad1.headers)).status_code == 200
    for other in ("pacs1", "mlops1"):
        response = await client.get(url, headers=accounts[other].headers)
        _assert_error(response, 403, "permission_denied")
    _assert_error(await client.get(url), 401, "not_authenticated")


async def test_nifti_instance_has_no_dicom_file(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "brain.nii.gz", _nifti_gz(_mri_volume()))
    instance = await _instance(app, case_id)
    response = await client.get(_file_url(case_id, instance.id), headers=admin.headers)
    _assert_error(response, 400, "not_a_dicom_image")


async def test_patient_images_are_private_and_not_sniffed(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)

    for url, media_type in [
        (_file_url(case_id, instance.id), "application/dicom"),
        (_frame_url(case_id, instance.id), "image/png"),
    ]:
        response = await client.get(url, headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media_type
        assert response.headers["cache-control"] == "private, max-age=0, must-revalidate"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "content-security-policy" not in response.headers

    response = await client.get(f"/api/cases/{case_id}", headers=admin.headers)
    assert response.headers["cache-control"] == "private, no-store"
