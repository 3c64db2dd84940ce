"""Viewer data for client-side rendering: grey CAM maps and NIfTI volume / label maps."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from tests.control.domain.test_viewer import (
    AFFINE,
    _assert_error,
    _ct_case_with_cam,
    _label_map,
    _mri_case_with_segmentation,
    _mri_volume,
    _nifti_gz,
    _png,
)


def _nifti(payload: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(payload))


async def test_cam_map_is_the_stored_grey_map_of_that_label(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _ct_case_with_cam(app, client, admin)

    effusion = _png(
        await client.get(
            f"/api/cases/{case_id}/findings/{finding_id}/cam/Effusion/map", headers=admin.headers
        )
    )
    cardiomegaly = _png(
        await client.get(
            f"/api/cases/{case_id}/findings/{finding_id}/cam/Cardiomegaly/map",
            headers=admin.headers,
        )
    )

    assert effusion.shape == (64, 64) and effusion.dtype == np.uint8
    assert (effusion[8:24, 40:56] == 255).all() and effusion[40:56, 8:24].max() == 0
    assert (cardiomegaly[40:56, 8:24] == 255).all() and cardiomegaly[8:24, 40:56].max() == 0


async def test_cam_map_errors(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _ct_case_with_cam(app, client, admin)
    _, _, segmentation_id = await _mri_case_with_segmentation(app, client, admin)
    base = f"/api/cases/{case_id}/findings"

    _assert_error(
        await client.get(f"{base}/{finding_id}/cam/Hernia/map", headers=admin.headers),
        404,
        "cam_not_found",
    )
    _assert_error(
        await client.get(f"{base}/{segmentation_id}/cam/Effusion/map", headers=admin.headers),
        404,
        "finding_not_found",
    )
    response = await client.get(f"{base}/{finding_id}/cam/Effusion/map")
    assert response.status_code == 401


async def test_volume_and_labels_come_as_nifti_on_the_stored_grid(app, client, accounts):
    admin = accounts["admin1"]
    case_id, _, finding_id = await _mri_case_with_segmentation(app, client, admin)
    base = f"/api/cases/{case_id}/findings/{finding_id}/nifti"

    volume = await client.get(f"{base}/volume", headers=admin.headers)
    labels = await client.get(f"{base}/labels", headers=admin.headers)

    assert volume.status_code == 200 and volume.headers["content-type"] == "application/gzip"
    image = _nifti(volume.content)
    assert np.allclose(image.get_fdata(), _mri_volume(), atol=1e-3)
    assert np.allclose(image.affine, AFFINE)
    label_map = np.asarray(_nifti(labels.content).dataobj)
    assert np.array_equal(label_map, _label_map(2, slice(2, 5), slice(3, 6), 4))
    assert "private" in labels.headers["cache-control"]


async def test_labels_follow_the_edited_mask_unless_the_ai_one_is_asked(app, client, accounts):
    admin = accounts["admin1"]
    radiologist = accounts["rad1"]
    case_id, _, finding_id = await _mri_case_with_segmentation(app, client, admin)
    claim = await client.post(f"/api/cases/{case_id}/claim", headers=radiologist.headers)
    assert claim.status_code in (200, 201), claim.text
    edited = _label_map(3, slice(1, 3), slice(1, 3), 2)
    saved = await client.post(
        f"/api/cases/{case_id}/findings/{finding_id}/mask",
        files={"file": ("edit.nii.gz", _nifti_gz(edited), "application/gzip")},
        data={"reason": "enhancing rim missed"},
        headers=radiologist.headers,
    )
    assert saved.status_code == 201, saved.text
    base = f"/api/cases/{case_id}/findings/{finding_id}/nifti/labels"

    current = await client.get(base, headers=radiologist.headers)
    ai = await client.get(base, params={"mask": "ai"}, headers=radiologist.headers)

    assert np.array_equal(np.asarray(_nifti(current.content).dataobj), edited)
    assert np.array_equal(
        np.asarray(_nifti(ai.content).dataobj), _label_map(2, slice(2, 5), slice(3, 6), 4)
    )
    _assert_error(
        await client.get(base, params={"mask": "mine"}, headers=radiologist.headers),
        400,
        "invalid_mask_choice",
    )
