"""Viewer endpoints: DICOM frames with windowing, headers, CAM and segmentation overlays, the
volume description, visibility, parameter errors and the version-keyed cache."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from datetime import UTC, datetime
from functools import cache
from io import BytesIO

import nibabel as nib
import numpy as np
import pydicom
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import generate_uid
from sqlalchemy import event, select

from control.app import create_app
from control.db.models import (
    Case,
    Decision,
    DecisionAction,
    Finding,
    FindingKind,
    InferenceJob,
    Instance,
    JobStatus,
    Series,
)
from control.domain.viewer import volume_cache
from control.domain.viewer.cache import cache_key
from control.domain.viewer.volume_cache import LruCache
from control.imaging.cams import pack_cams
from control.imaging.volumes import BRATS_CHANNELS
from tests.conftest import REQUIRE_SERVICES, make_account

SHAPE = (12, 10, 8)  # X, Y, Z of the test MRI volume
# x and y point Left and Posterior (as many BraTS files do): the viewer must flip them.
AFFINE = np.diag([-1.5, -1.0, 2.0, 1.0])
EDEMA_GREEN = (0, 200, 0)
ENHANCING_YELLOW = (255, 220, 0)


@cache
def _ct_small() -> bytes:
    with open(get_testdata_file("CT_small.dcm"), "rb") as handle:
        return handle.read()


def _new_ct() -> bytes:
    """CT_small.dcm as a new instance of a new study (so each call makes a new case)."""
    dataset = pydicom.dcmread(BytesIO(_ct_small()))
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.PatientID = uuid.uuid4().hex[:16]
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _nifti_gz(data: np.ndarray, affine: np.ndarray = AFFINE) -> bytes:
    return gzip.compress(nib.Nifti1Image(data, affine).to_bytes())


def _mri_volume(seed: int = 7) -> np.ndarray:
    """Channels-last float32 (X, Y, Z, 4); FLAIR is 100 + 10 i + j, so orientation shows."""
    rng = np.random.default_rng(seed)
    volume = rng.uniform(10.0, 50.0, size=(*SHAPE, 4)).astype(np.float32)
    i, j, _ = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    volume[..., BRATS_CHANNELS.index("FLAIR")] = 100.0 + 10.0 * i + j
    return volume


def _label_map(label: int, i: slice, j: slice, k: int) -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[i, j, k] = label
    return labels


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    with Image.open(BytesIO(response.content)) as image:
        return np.asarray(image)


def _assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


async def _upload(client, account, name: str, payload: bytes) -> str:
    response = await client.post(
        "/api/studies", files=[("files", (name, payload))], headers=account.headers
    )
    assert response.status_code == 201, response.text
    [case_id] = response.json()["case_ids"]
    return case_id


async def _instance(app, case_id: str) -> Instance:
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        return await session.scalar(
            select(Instance).join(Series).where(Series.study_id == case.study_id)
        )


async def _case_version(client, admin, case_id: str) -> int:
    response = await client.get(f"/api/cases/{case_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()["version"]


async def _patch_case(client, admin, case_id: str, **changes) -> None:
    body = {"version": await _case_version(client, admin, case_id), **changes}
    response = await client.patch(f"/api/cases/{case_id}", json=body, headers=admin.headers)
    assert response.status_code == 200, response.text


async def _add_finding(
    app,
    case_id: str,
    kind: FindingKind,
    artifacts: dict[str, bytes],
    *,
    instance_id: uuid.UUID | None = None,
    volumes_ml: dict[str, float] | None = None,
    reuse: dict[str, str] | None = None,
) -> str:
    """A finding of a finished job; ``artifacts`` maps artifact names to bytes stored under
    job-specific keys, ``reuse`` to keys already stored (the uploaded volume)."""
    job_id, finding_id = uuid.uuid4(), uuid.uuid4()
    prefix = f"derived/cases/{case_id}/jobs/{job_id}"
    keys = dict(reuse or {})
    for name, payload in artifacts.items():
        key = f"{prefix}/{instance_id or 'volume'}/{name.replace(':', '_')}"
        await app.state.store.put(key, payload)
        keys[name] = key
    classification = kind == FindingKind.CLASSIFICATION
    async with app.state.session_factory() as session:
        session.add(
            InferenceJob(
                id=job_id,
                case_id=uuid.UUID(case_id),
                pipeline="cxr" if classification else "brats",
                status=JobStatus.DONE,
                attempts=1,
                max_attempts=3,
                available_at=datetime.now(UTC),
                finished_at=datetime.now(UTC),
            )
        )
        await session.flush()
        session.add(
            Finding(
                id=finding_id,
                case_id=uuid.UUID(case_id),
                job_id=job_id,
                subject=str(instance_id) if instance_id else "volume",
                instance_id=instance_id,
                kind=kind,
                model_name="cxr" if classification else "brats",
                network_name="cxr_net" if classification else "brats_net",
                model_version="1",
                labels=["Effusion"] if classification else ["whole_tumour"],
                probabilities={"Effusion": 0.9} if classification else {},
                thresholds={"Effusion": 0.5} if classification else {},
                volumes_ml=volumes_ml or {},
                artifacts=keys,
                input_sha256="0" * 64,
                output_sha256="1" * 64,
                latency_ms=12.5,
            )
        )
        await session.commit()
    return str(finding_id)


def _cam_png() -> bytes:
    """A CAM image as the worker stores it: two 64x64 maps stacked (Cardiomegaly, then
    Effusion). Effusion is cold except a saturated block (rows 8-23, columns 40-55);
    Cardiomegaly is hot elsewhere, so reading the wrong map shows in the overlay."""
    cams = np.zeros((2, 64, 64), dtype=np.uint8)
    cams[0, 40:56, 8:24] = 255
    cams[1, 8:24, 40:56] = 255
    buffer = BytesIO()
    Image.fromarray(pack_cams(cams)).save(buffer, format="PNG")
    return buffer.getvalue()


async def _ct_case_with_cam(app, client, admin) -> tuple[str, Instance, str]:
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    finding_id = await _add_finding(
        app,
        case_id,
        FindingKind.CLASSIFICATION,
        {"cams": _cam_png()},
        instance_id=instance.id,
        reuse={"cam_labels": "Cardiomegaly,Effusion"},
    )
    return case_id, instance, finding_id


async def _mri_case_with_segmentation(
    app, client, admin, volume: np.ndarray | None = None
) -> tuple[str, Instance, str]:
    """An uploaded four-channel NIfTI study and a segmentation finding: edema (label 2) at
    stored voxels i 2-4, j 3-5, k 4."""
    case_id = await _upload(
        client, admin, "brain.nii.gz", _nifti_gz(_mri_volume() if volume is None else volume)
    )
    instance = await _instance(app, case_id)
    finding_id = await _add_finding(
        app,
        case_id,
        FindingKind.SEGMENTATION,
        {"segmentation": _nifti_gz(_label_map(2, slice(2, 5), slice(3, 6), 4))},
        volumes_ml={"enhancing_tumour": 0.0, "tumour_core": 0.0, "whole_tumour": 0.027},
        reuse={"volume": instance.object_key},
    )
    return case_id, instance, finding_id


def _frame_url(case_id: str, instance_id, frame: int = 0) -> str:
    return f"/api/cases/{case_id}/instances/{instance_id}/frames/{frame}"


def _slice_url(case_id: str, finding_id: str, plane: str = "axial", index: int = 4) -> str:
    return f"/api/cases/{case_id}/findings/{finding_id}/slices/{plane}/{index}"


def _expected_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    scaled = (values.astype(np.float64) - (center - width / 2)) / width * 255
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


# --- DICOM frames ------------------------------------------------------------------------------


async def test_frame_is_a_png_of_the_instance_size_windowed_as_asked(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    stored = pydicom.dcmread(BytesIO(await app.state.store.get(instance.object_key)))
    hounsfield = apply_modality_lut(stored.pixel_array, stored)

    default = _png(await client.get(_frame_url(case_id, instance.id), headers=admin.headers))
    assert default.shape == (instance.rows, instance.columns) == (128, 128)

    images = {}
    for name, (center, width) in {"narrow": (40.0, 80.0), "wide": (100.0, 4000.0)}.items():
        response = await client.get(
            _frame_url(case_id, instance.id),
            params={"window_center": center, "window_width": width},
            headers=admin.headers,
        )
        images[name] = _png(response)
        expected = _expected_window(hounsfield, center, width)
        assert np.abs(images[name].astype(int) - expected).max() <= 1
    # A narrow soft-tissue window saturates bone and air; a wide one keeps every value grey.
    narrow, wide = images["narrow"], images["wide"]
    assert ((narrow == 0) | (narrow == 255)).mean() > 0.5
    assert ((wide > 0) & (wide < 255)).all()
    assert narrow.std() > 3 * wide.std()


async def test_a_frame_request_reads_only_its_own_instance_row(app, client, accounts):
    # Not every instance of the study (an MR study has hundreds) for each frame or slice.
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(" ".join(statement.split()))

    engine = app.state.session_factory.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = await client.get(_frame_url(case_id, instance.id), headers=admin.headers)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    reads = [sql for sql in statements if re.search(r"\bFROM instances\b", sql)]
    assert reads and all("instances.id =" in sql for sql in reads), reads


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"window_center": 40}, 400, "invalid_window"),
        ({"window_width": 400}, 400, "invalid_window"),
        ({"window_center": 40, "window_width": 0}, 400, "invalid_window"),
        ({"window_center": "nan", "window_width": 10}, 400, "invalid_window"),
    ],
)
async def test_frame_rejects_half_or_bad_windows(app, client, accounts, params, status, code):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    response = await client.get(
        _frame_url(case_id, instance.id), params=params, headers=admin.headers
    )
    _assert_error(response, status, code)


async def test_frame_out_of_range_and_foreign_instance(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    other_case = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    foreign = await _instance(app, other_case)

    response = await client.get(_frame_url(case_id, instance.id, 1), headers=admin.headers)
    _assert_error(response, 400, "frame_out_of_range")
    response = await client.get(_frame_url(case_id, foreign.id), headers=admin.headers)
    _assert_error(response, 404, "instance_not_found")
    response = await client.get(_frame_url(case_id, uuid.uuid4()), headers=admin.headers)
    _assert_error(response, 404, "instance_not_found")
    response = await client.get(_frame_url(str(uuid.uuid4()), instance.id), headers=admin.headers)
    _assert_error(response, 404, "case_not_found")


async def test_nifti_instances_have_no_frames_or_dicom_header(app, client, accounts):
    admin = accounts["admin1"]
    case_id, instance, _ = await _mri_case_with_segmentation(app, client, admin)
    response = await client.get(_frame_url(case_id, instance.id), headers=admin.headers)
    _assert_error(response, 400, "not_a_dicom_image")
    response = await client.get(
        f"/api/cases/{case_id}/instances/{instance.id}/metadata", headers=admin.headers
    )
    _assert_error(response, 400, "not_a_dicom_image")


async def test_radiologist_sees_pool_and_own_cases_only(app, client, accounts):
    admin, rad1, rad2 = accounts["admin1"], accounts["rad1"], accounts["rad2"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    url = _frame_url(case_id, instance.id)
    assert (await client.get(url, headers=rad2.headers)).status_code == 200  # in the pool

    await _patch_case(client, admin, case_id, assignee_id=rad1.id)

    _assert_error(await client.get(url, headers=rad2.headers), 404, "case_not_found")
    metadata_url = f"/api/cases/{case_id}/instances/{instance.id}/metadata"
    _assert_error(await client.get(metadata_url, headers=rad2.headers), 404, "case_not_found")
    assert _png(await client.get(url, headers=rad1.headers)).shape == (128, 128)
    assert _png(await client.get(url, headers=admin.headers)).shape == (128, 128)
    response = await client.get(url, headers=accounts["pacs1"].headers)
    _assert_error(response, 403, "permission_denied")


# --- DICOM header ----------------------------------------------------------------------------


async def test_metadata_is_the_deidentified_header_without_pixel_data(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    original = pydicom.dcmread(BytesIO(_ct_small()))

    response = await client.get(
        f"/api/cases/{case_id}/instances/{instance.id}/metadata", headers=admin.headers
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    header = response.json()
    assert header["00280010"] == {"vr": "US", "Value": [128]}  # Rows
    assert header["00280011"] == {"vr": "US", "Value": [128]}  # Columns
    assert header["00080018"]["Value"] == [instance.sop_instance_uid]
    assert "7FE00010" not in header  # Pixel Data
    assert not any("BulkDataURI" in element for element in header.values())
    text = json.dumps(header)
    assert str(original.PatientName) not in text
    assert original.StudyInstanceUID not in text
    # What the viewer returns is exactly the stored, de-identified dataset.
    stored = pydicom.dcmread(BytesIO(await app.state.store.get(instance.object_key)))
    assert header["00100020"] == stored["PatientID"].to_json_dict(None, 0)


# --- CAM overlay -----------------------------------------------------------------------------


async def test_cam_overlay_is_redder_in_the_hot_spot(app, client, accounts):
    admin = accounts["admin1"]
    case_id, instance, finding_id = await _ct_case_with_cam(app, client, admin)
    url = f"/api/cases/{case_id}/findings/{finding_id}/cam/Effusion"

    image = _png(await client.get(url, headers=admin.headers)).astype(int)

    assert image.shape == (instance.rows, instance.columns, 3)
    red_excess = image[..., 0] - (image[..., 1] + image[..., 2]) / 2
    hot = red_excess[24:40, 88:104]  # well inside the block, scaled 2x to 128x128
    cold = red_excess[80:120, 8:48]
    assert hot.min() > 40  # alpha 0.4 of the jet map's dark red (128, 0, 0)
    assert np.array_equal(cold, np.zeros_like(cold))  # a cold CAM leaves the grey image
    base = _png(await client.get(_frame_url(case_id, instance.id), headers=admin.headers))
    assert np.array_equal(image[80:120, 8:48, 1], base[80:120, 8:48])

    faint = _png(await client.get(url, params={"alpha": 0.1}, headers=admin.headers)).astype(int)
    faint_excess = faint[..., 0] - (faint[..., 1] + faint[..., 2]) / 2
    assert faint_excess[24:40, 88:104].max() < hot.min()


async def test_cam_overlay_errors(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _ct_case_with_cam(app, client, admin)
    mri_case, _, segmentation_id = await _mri_case_with_segmentation(app, client, admin)
    base = f"/api/cases/{case_id}/findings/{finding_id}/cam"

    _assert_error(await client.get(f"{base}/Hernia", headers=admin.headers), 404, "cam_not_found")
    response = await client.get(f"{base}/Effusion", params={"alpha": 2}, headers=admin.headers)
    _assert_error(response, 400, "invalid_alpha")
    response = await client.get(
        f"{base}/Effusion", params={"window_width": 10}, headers=admin.headers
    )
    _assert_error(response, 400, "invalid_window")
    response = await client.get(
        f"/api/cases/{mri_case}/findings/{segmentation_id}/cam/Effusion", headers=admin.headers
    )
    _assert_error(response, 400, "not_a_classification")
    response = await client.get(
        f"/api/cases/{mri_case}/findings/{finding_id}/cam/Effusion", headers=admin.headers
    )
    _assert_error(response, 404, "finding_not_found")


# --- segmentation slices and volume -----------------------------------------------------------


async def test_slice_is_shown_in_radiological_orientation(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _mri_case_with_segmentation(app, client, admin)

    response = await client.get(
        _slice_url(case_id, finding_id, "axial", 4),
        params={"overlay": "false", "window_center": 165, "window_width": 130},
        headers=admin.headers,
    )

    image = _png(response)
    x, y, _ = SHAPE
    assert image.shape == (y, x)  # grey, anterior at the top, patient right on the left
    # Stored x points left and y posterior: display row r, column c is stored voxel (c, r).
    rows, columns = np.meshgrid(np.arange(y), np.arange(x), indexing="ij")
    expected = _expected_window(100.0 + 10.0 * columns + rows, 165.0, 130.0)
    assert np.abs(image.astype(int) - expected).max() <= 1

    coronal = _png(
        await client.get(_slice_url(case_id, finding_id, "coronal", 0), headers=admin.headers)
    )
    sagittal = _png(
        await client.get(_slice_url(case_id, finding_id, "sagittal", 0), headers=admin.headers)
    )
    assert coronal.shape == (SHAPE[2], SHAPE[0], 3)
    assert sagittal.shape == (SHAPE[2], SHAPE[1], 3)


async def test_slice_tints_labelled_voxels_with_the_label_colour(app, client, accounts):
    admin, rad1 = accounts["admin1"], accounts["rad1"]
    case_id, _, finding_id = await _mri_case_with_segmentation(app, client, admin)
    # The holder replaced the AI mask: enhancing tumour (3) at stored i 7-9, j 6-8, k 4.
    edited = _nifti_gz(_label_map(3, slice(7, 10), slice(6, 9), 4))
    stored = await app.state.store.put(
        f"derived/cases/{case_id}/masks/{uuid.uuid4()}.nii.gz", edited
    )
    async with app.state.session_factory() as session:
        session.add(
            Decision(
                finding_id=uuid.UUID(finding_id),
                case_id=uuid.UUID(case_id),
                sequence=1,
                action=DecisionAction.EDIT,
                user_id=uuid.UUID(rad1.id),
                username=rad1.username,
                reason="missed enhancing rim",
                mask_key=stored.key,
                mask_sha256=stored.sha256,
            )
        )
        await session.commit()
    url = _slice_url(case_id, finding_id, "axial", 4)

    ai = _png(await client.get(url, params={"mask": "ai"}, headers=admin.headers)).astype(int)
    current = _png(await client.get(url, headers=admin.headers)).astype(int)
    plain = _png(await client.get(url, params={"overlay": "false"}, headers=admin.headers))

    grey = plain.astype(float)
    ai_region = np.zeros(plain.shape, dtype=bool)
    ai_region[3:6, 2:5] = True  # stored (i 2-4, j 3-5) -> display rows 3-5, columns 2-4
    edit_region = np.zeros(plain.shape, dtype=bool)
    edit_region[6:9, 7:10] = True

    def tinted(colour: tuple[int, int, int]) -> np.ndarray:
        return np.stack([0.6 * grey + 0.4 * value for value in colour], axis=-1)

    def untouched(image: np.ndarray, region: np.ndarray) -> None:
        assert np.array_equal(image[~region], np.repeat(plain[~region][:, None], 3, axis=1))

    assert np.abs(ai[ai_region] - tinted(EDEMA_GREEN)[ai_region]).max() <= 1
    untouched(ai, ai_region)
    assert np.abs(current[edit_region] - tinted(ENHANCING_YELLOW)[edit_region]).max() <= 1
    untouched(current, edit_region)

    for params, code in [
        ({"channel": "T3"}, "invalid_channel"),
        ({"mask": "radiologist"}, "invalid_mask_choice"),
        ({"alpha": -0.5}, "invalid_alpha"),
        ({"window_center": 1}, "invalid_window"),
    ]:
        _assert_error(await client.get(url, params=params, headers=admin.headers), 400, code)


async def test_every_channel_renders_with_its_own_default_window(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _mri_case_with_segmentation(app, client, admin)
    url = _slice_url(case_id, finding_id, "axial", 4)
    images = [
        _png(
            await client.get(url, params={"channel": c, "overlay": "false"}, headers=admin.headers)
        )
        for c in BRATS_CHANNELS
    ]
    assert len({image.tobytes() for image in images}) == len(BRATS_CHANNELS)
    for image in images:  # each spans (nearly) the full grey range of its channel
        assert image.min() <= 5 and image.max() >= 250


async def test_slice_errors(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _mri_case_with_segmentation(app, client, admin)
    ct_case, _, cam_finding = await _ct_case_with_cam(app, client, admin)

    response = await client.get(
        _slice_url(case_id, finding_id, "oblique", 0), headers=admin.headers
    )
    _assert_error(response, 400, "invalid_plane")
    response = await client.get(
        _slice_url(case_id, finding_id, "axial", SHAPE[2]), headers=admin.headers
    )
    _assert_error(response, 400, "slice_out_of_range")
    response = await client.get(
        _slice_url(case_id, finding_id, "sagittal", -1), headers=admin.headers
    )
    _assert_error(response, 400, "slice_out_of_range")
    response = await client.get(_slice_url(ct_case, cam_finding), headers=admin.headers)
    _assert_error(response, 400, "not_a_segmentation")
    response = await client.get(
        f"/api/cases/{ct_case}/findings/{cam_finding}/volume", headers=admin.headers
    )
    _assert_error(response, 400, "not_a_segmentation")
    response = await client.get(_slice_url(case_id, str(uuid.uuid4())), headers=admin.headers)
    _assert_error(response, 404, "finding_not_found")


async def test_volume_describes_the_grid_and_the_ai_volumes(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _mri_case_with_segmentation(app, client, admin)

    response = await client.get(
        f"/api/cases/{case_id}/findings/{finding_id}/volume", headers=admin.headers
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "shape": list(SHAPE),
        "spacing_mm": [1.5, 1.0, 2.0],
        "slices": {"axial": SHAPE[2], "coronal": SHAPE[1], "sagittal": SHAPE[0]},
        "channels": ["T1", "T1ce", "T2", "FLAIR"],
        "volumes_ml": {"enhancing_tumour": 0.0, "tumour_core": 0.0, "whole_tumour": 0.027},
    }


# --- caching ---------------------------------------------------------------------------------


async def test_rendered_frames_are_cached_until_the_case_changes(app, client, accounts):
    admin = accounts["admin1"]
    case_id = await _upload(client, admin, "ct.dcm", _new_ct())
    instance = await _instance(app, case_id)
    url = _frame_url(case_id, instance.id)
    params = {"window_center": 40.0, "window_width": 400.0}

    first = await client.get(url, params=params, headers=admin.headers)
    assert first.status_code == 200, first.text
    async with app.state.session_factory() as session:
        case = await session.get(Case, uuid.UUID(case_id))
    assert await app.state.cache.exists(cache_key(case, url, params))

    # With the stored object gone, the same request is still answered, from the cache ...
    await app.state.store.delete(instance.object_key)
    again = await client.get(url, params=params, headers=admin.headers)
    assert again.status_code == 200, again.text
    assert again.content == first.content
    # ... but not a request the cache has not seen.
    response = await client.get(url, headers=admin.headers)
    _assert_error(response, 404, "object_not_found")

    # Any change to the case bumps its version: the old entry is no longer used.
    await _patch_case(client, admin, case_id, priority="urgent")
    response = await client.get(url, params=params, headers=admin.headers)
    _assert_error(response, 404, "object_not_found")


async def test_redis_holds_rendered_frames_when_configured(settings):
    url = "redis://127.0.0.1:6379/14"
    probe = aioredis.from_url(url)
    try:
        await probe.ping()
    except Exception:
        await probe.aclose()
        if REQUIRE_SERVICES:
            raise
        pytest.skip("needs the Redis server on 127.0.0.1:6379")
    app = create_app(settings.model_copy(update={"redis_url": url}))
    async with AsyncTestClient(app=app) as client:
        admin = await make_account(app, client, "admin1", "admin")
        case_id = await _upload(client, admin, "ct.dcm", _new_ct())
        instance = await _instance(app, case_id)
        first = await client.get(_frame_url(case_id, instance.id), headers=admin.headers)
        assert first.status_code == 200, first.text
        keys = [key.decode() for key in await probe.keys(f"*viewer:{case_id}:*")]
        try:
            assert len(keys) == 1 and "/frames/0" in keys[0], keys
            assert await probe.get(keys[0]) == first.content
            await app.state.store.delete(instance.object_key)
            again = await client.get(_frame_url(case_id, instance.id), headers=admin.headers)
            assert again.content == first.content
            await _patch_case(client, admin, case_id, priority="urgent")
            response = await client.get(_frame_url(case_id, instance.id), headers=admin.headers)
            _assert_error(response, 404, "object_not_found")
        finally:
            stale = await probe.keys(f"*viewer:{case_id}:*")
            if stale:
                await probe.delete(*stale)
            await probe.aclose()


async def test_metadata_and_overlays_are_cached_per_case_version(app, client, accounts):
    admin = accounts["admin1"]
    case_id, instance, finding_id = await _ct_case_with_cam(app, client, admin)
    urls = [
        f"/api/cases/{case_id}/instances/{instance.id}/metadata",
        f"/api/cases/{case_id}/findings/{finding_id}/cam/Effusion",
    ]
    first = [await client.get(url, headers=admin.headers) for url in urls]
    assert [response.status_code for response in first] == [200, 200]

    await app.state.store.delete(instance.object_key)
    for url, earlier in zip(urls, first, strict=True):
        response = await client.get(url, headers=admin.headers)
        assert response.status_code == 200 and response.content == earlier.content

    await _patch_case(client, admin, case_id, priority="stat")
    for url in urls:
        _assert_error(await client.get(url, headers=admin.headers), 404, "object_not_found")


async def test_slices_reuse_the_decoded_volume_but_never_a_removed_one(
    app, client, accounts, monkeypatch
):
    admin = accounts["admin1"]
    # A volume no other test uploads, so no earlier test left it decoded in memory.
    volume = _mri_volume(seed=uuid.uuid4().int % 2**32)
    case_id, instance, finding_id = await _mri_case_with_segmentation(app, client, admin, volume)
    decoded = []
    decode = volume_cache._decode_volume
    monkeypatch.setattr(
        volume_cache, "_decode_volume", lambda payload: decoded.append(1) or decode(payload)
    )

    for index in range(SHAPE[2]):
        _png(
            await client.get(_slice_url(case_id, finding_id, "axial", index), headers=admin.headers)
        )
    assert len(decoded) == 1

    await app.state.store.delete(instance.object_key)
    # Cached PNGs are still served; a slice never rendered is not cut from the memory copy.
    _png(await client.get(_slice_url(case_id, finding_id, "axial", 0), headers=admin.headers))
    response = await client.get(
        _slice_url(case_id, finding_id, "coronal", 0), headers=admin.headers
    )
    _assert_error(response, 404, "object_not_found")


def test_lru_keeps_the_most_recently_used_entries() -> None:
    lru: LruCache[str, int] = LruCache(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now "b" is the least recently used
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)
