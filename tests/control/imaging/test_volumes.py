"""Volumes from DICOM series and NIfTI, resampling through world coordinates, brats input.

The DICOM series come from ``tests.fixtures.mr_series``: one physical phantom (a bright sphere
in a dimmer head) sampled on each series' own grid, so resampling is checked physically.
"""

from __future__ import annotations

import copy
import gzip
import io
import random

import nibabel
import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from control.dicom.sequences import classify_mr_sequence
from control.errors import InvalidInputError
from control.imaging.volumes import (
    BRATS_CHANNELS,
    Volume,
    brats_input,
    nifti_channels,
    resample_to,
    series_volume,
)
from tests.fixtures.mr_series import (
    BRATS_PHANTOM_SERIES,
    CORONAL,
    SPHERE_CENTRE_LPS,
    SPHERE_CENTRE_RAS,
    SPHERE_RADIUS_MM,
    brats_phantom_study,
    phantom_series,
)

Study = dict[str, list[pydicom.FileDataset]]


@pytest.fixture(scope="module")
def study() -> Study:
    """The phantom study after a DICOM write/read round trip, as an archive would hold it."""
    return {
        sequence: [_round_trip(ds) for ds in datasets]
        for sequence, datasets in brats_phantom_study().items()
    }


@pytest.fixture(scope="module")
def volumes(study: Study) -> dict[str, Volume]:
    return {sequence: series_volume(datasets) for sequence, datasets in study.items()}


def _round_trip(ds: pydicom.Dataset) -> pydicom.FileDataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _sphere_threshold(sequence: str) -> float:
    settings = BRATS_PHANTOM_SERIES[sequence]
    return (float(settings["intensity"]) + float(settings["background"])) / 2


def _centroid_voxel(data: npt.NDArray[np.float32], threshold: float) -> npt.NDArray[np.float64]:
    """Intensity-weighted centroid (voxel coordinates) of the voxels above ``threshold``."""
    mask = data > threshold
    assert mask.sum() > 100, "the sphere must be visible"
    weights = data[mask].astype(np.float64)
    coordinates = np.argwhere(mask).astype(np.float64)
    centroid: npt.NDArray[np.float64] = (coordinates * weights[:, None]).sum(0) / weights.sum()
    return centroid


def _to_world(affine: npt.NDArray[np.float64], voxel: npt.ArrayLike) -> npt.NDArray[np.float64]:
    world: npt.NDArray[np.float64] = affine[:3, :3] @ np.asarray(voxel) + affine[:3, 3]
    return world


# -- the fixture itself -------------------------------------------------------------------------


def test_phantom_study_is_valid_dicom(study: Study) -> None:
    generated = brats_phantom_study(study_uid="1.2.826.0.1.3680043.10.543.1")
    assert {ds.StudyInstanceUID for series in generated.values() for ds in series} == {
        "1.2.826.0.1.3680043.10.543.1"
    }
    series_uids = {series[0].SeriesInstanceUID for series in study.values()}
    assert len(series_uids) == 4
    sop_uids = {ds.SOPInstanceUID for series in study.values() for ds in series}
    assert len(sop_uids) == sum(len(series) for series in study.values())
    for sequence, series in study.items():
        ds = series[0]
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage
        assert ds.Modality == "MR" and ds.BodyPartExamined == "BRAIN"
        assert ds.pixel_array.dtype == np.uint16
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        assert classify_mr_sequence(ds) == sequence
    # The four grids really differ, so the alignment tests below mean something.
    grids = {(v.data.shape, v.affine.round(3).tobytes()) for v in _series_volumes(study)}
    assert len(grids) == 4


def _series_volumes(study: Study) -> list[Volume]:
    return [series_volume(series) for series in study.values()]


# -- series_volume ------------------------------------------------------------------------------


def test_series_volume_sorts_shuffled_slices(study: Study) -> None:
    ordered = study["T2"]
    shuffled = list(ordered)
    random.Random(7).shuffle(shuffled)
    assert shuffled != ordered
    volume = series_volume(shuffled)
    reference = series_volume(ordered)
    np.testing.assert_array_equal(volume.data, reference.data)
    np.testing.assert_allclose(volume.affine, reference.affine)
    # Slice k is the instance with the k-th position along the normal (InstanceNumber k+1).
    for k in (0, 5, len(ordered) - 1):
        instance = next(ds for ds in shuffled if ds.InstanceNumber == k + 1)
        np.testing.assert_array_equal(volume.data[:, :, k], instance.pixel_array.T - 100.0)


def test_series_volume_sorts_descending_positions(study: Study) -> None:
    """Slices stored head-to-feet give the same volume as feet-to-head."""
    forward = series_volume(study["FLAIR"])
    backward = series_volume(list(reversed(study["FLAIR"])))
    np.testing.assert_array_equal(forward.data, backward.data)
    assert forward.affine[2, 2] > 0


def test_series_volume_applies_modality_lut(study: Study) -> None:
    for sequence, series in study.items():
        volume = series_volume(series)
        slope, intercept = BRATS_PHANTOM_SERIES[sequence]["rescale"]
        expected = series[0].pixel_array.T.astype(np.float64) * slope + intercept
        np.testing.assert_allclose(volume.data[:, :, 0], expected)
        assert volume.data.dtype == np.float32
        assert volume.data.max() == pytest.approx(BRATS_PHANTOM_SERIES[sequence]["intensity"])


def test_affine_follows_dicom_geometry_in_ras(study: Study, volumes: dict[str, Volume]) -> None:
    """affine @ (i, j, k) = IPP_k + i * column spacing * row cosines + j * row spacing *
    column cosines, with x and y negated (LPS to RAS)."""
    for sequence, volume in volumes.items():
        ordered = sorted(study[sequence], key=lambda ds: ds.InstanceNumber)
        for i, j, k in ((0, 0, 0), (3, 7, 2), (11, 2, len(ordered) - 1)):
            ds = ordered[k]
            orientation = np.array(ds.ImageOrientationPatient, dtype=np.float64)
            row_mm, column_mm = (float(value) for value in ds.PixelSpacing)
            lps = (
                np.array(ds.ImagePositionPatient, dtype=np.float64)
                + i * column_mm * orientation[:3]
                + j * row_mm * orientation[3:]
            )
            expected = lps * np.array([-1.0, -1.0, 1.0])
            np.testing.assert_allclose(_to_world(volume.affine, (i, j, k)), expected, atol=1e-3)
        spacing = BRATS_PHANTOM_SERIES[sequence]["spacing"]
        np.testing.assert_allclose(volume.spacing_mm, (spacing[1], spacing[0], spacing[2]), 1e-4)


def test_affine_maps_sphere_centre_to_known_world_point(volumes: dict[str, Volume]) -> None:
    for sequence, volume in volumes.items():
        centroid = _centroid_voxel(volume.data, _sphere_threshold(sequence))
        world = _to_world(volume.affine, centroid)
        np.testing.assert_allclose(world, SPHERE_CENTRE_RAS, atol=0.3, err_msg=sequence)
        # And the other way: the known point lies in the sphere, the sphere's edge does not.
        voxel = np.linalg.solve(volume.affine, [*SPHERE_CENTRE_RAS, 1.0])[:3]
        assert volume.data[tuple(np.rint(voxel).astype(int))] == pytest.approx(
            BRATS_PHANTOM_SERIES[sequence]["intensity"]
        )
    assert (-SPHERE_CENTRE_LPS[0], -SPHERE_CENTRE_LPS[1], SPHERE_CENTRE_LPS[2]) == SPHERE_CENTRE_RAS


def test_single_slice_series_uses_slice_thickness() -> None:
    (instance,) = phantom_series("t2_tse_tra", shape=(16, 20, 1), spacing=(1.0, 1.5, 3.0))
    volume = series_volume([instance])
    assert volume.data.shape == (20, 16, 1)
    np.testing.assert_allclose(volume.spacing_mm, (1.5, 1.0, 3.0))
    np.testing.assert_allclose(volume.affine[:3, 2], (0.0, 0.0, 3.0))


def test_series_volume_errors(study: Study) -> None:
    with pytest.raises(InvalidInputError) as empty:
        series_volume([])
    assert empty.value.code == "series_empty"

    mixed = [copy.deepcopy(ds) for ds in study["FLAIR"][:6]]
    smaller = phantom_series("t2_flair_tra", shape=(40, 48, 1), spacing=(1.25, 1.25, 1.25))[0]
    smaller.ImagePositionPatient = mixed[3].ImagePositionPatient
    mixed[3] = smaller
    with pytest.raises(InvalidInputError) as rows:
        series_volume(mixed)
    assert rows.value.code == "series_inconsistent"

    duplicated = [*study["FLAIR"][:6], study["FLAIR"][2]]
    with pytest.raises(InvalidInputError) as duplicate:
        series_volume(duplicated)
    assert duplicate.value.code == "series_inconsistent"
    assert duplicate.value.detail["reason"] == "duplicate_position"

    gap = study["FLAIR"][:5] + study["FLAIR"][6:10]
    with pytest.raises(InvalidInputError) as uneven:
        series_volume(gap)
    assert uneven.value.code == "series_inconsistent"
    assert uneven.value.detail["reason"] == "non_uniform_spacing"

    rotated = [copy.deepcopy(ds) for ds in study["FLAIR"][:4]]
    rotated[1].ImageOrientationPatient = list(CORONAL)
    with pytest.raises(InvalidInputError) as orientation:
        series_volume(rotated)
    assert orientation.value.code == "series_inconsistent"

    positionless = [copy.deepcopy(ds) for ds in study["FLAIR"][:4]]
    del positionless[2].ImagePositionPatient
    with pytest.raises(InvalidInputError) as missing:
        series_volume(positionless)
    assert missing.value.code == "series_not_volume"


# -- resample_to --------------------------------------------------------------------------------


def test_identical_grid_resample_returns_data_unchanged(volumes: dict[str, Volume]) -> None:
    flair = volumes["FLAIR"]
    assert resample_to(flair, flair.data.shape, flair.affine) is flair.data
    assert resample_to(flair, flair.data.shape, flair.affine + 1e-6, order=0) is flair.data


def test_resample_onto_shifted_grid_moves_voxels(volumes: dict[str, Volume]) -> None:
    """A target grid one voxel further along i samples source voxel i + 1 exactly."""
    t2 = volumes["T2"]
    target = t2.affine.copy()
    target[:3, 3] += t2.affine[:3, 0]
    shifted = resample_to(t2, t2.data.shape, target)
    assert shifted.dtype == np.float32
    np.testing.assert_allclose(shifted[:-1], t2.data[1:], atol=1e-3)
    assert not shifted[-1].any(), "outside the source is 0"


def test_nearest_resampling_keeps_label_dtype(volumes: dict[str, Volume]) -> None:
    t1 = volumes["T1"]
    labels = Volume(data=(t1.data > _sphere_threshold("T1")).astype(np.uint8), affine=t1.affine)
    flair = volumes["FLAIR"]
    resampled = resample_to(labels, flair.data.shape, flair.affine, order=0)
    assert resampled.dtype == np.uint8
    assert set(np.unique(resampled)) == {0, 1}
    # The sphere's volume survives the change of grid (within 5%).
    sphere_ml = 4 / 3 * np.pi * SPHERE_RADIUS_MM**3
    assert resampled.sum() * np.prod(flair.spacing_mm) == pytest.approx(sphere_ml, rel=0.05)


@pytest.mark.parametrize("sequence", ["T1", "T1ce", "T2"])
def test_resampled_sphere_lands_on_flair_sphere(volumes: dict[str, Volume], sequence: str) -> None:
    flair = volumes["FLAIR"]
    flair_centre = _centroid_voxel(flair.data, _sphere_threshold("FLAIR"))
    source = volumes[sequence]
    native_centre = _centroid_voxel(source.data, _sphere_threshold(sequence))
    assert np.linalg.norm(native_centre - flair_centre) > 1.0, "grids must differ"
    resampled = resample_to(source, flair.data.shape, flair.affine)
    assert resampled.shape == flair.data.shape
    centre = _centroid_voxel(resampled, _sphere_threshold(sequence))
    assert np.linalg.norm(centre - flair_centre) < 1.0
    assert np.linalg.norm(centre - flair_centre) < 0.3, "partial-volume ramps keep it tight"


def test_resampling_a_coronal_series_onto_the_axial_flair(volumes: dict[str, Volume]) -> None:
    coronal = series_volume(
        phantom_series(
            "t2_tse_cor",
            shape=(40, 44, 30),
            spacing=(1.4, 1.3, 1.8),
            orientation=CORONAL,
            intensity=800.0,
            background=200.0,
        )
    )
    flair = volumes["FLAIR"]
    resampled = resample_to(coronal, flair.data.shape, flair.affine)
    centre = _centroid_voxel(resampled, 500.0)
    flair_centre = _centroid_voxel(flair.data, _sphere_threshold("FLAIR"))
    assert np.linalg.norm(centre - flair_centre) < 0.5


# -- brats_input --------------------------------------------------------------------------------


def test_brats_input_channels_on_the_flair_grid(volumes: dict[str, Volume]) -> None:
    shuffled = {sequence: volumes[sequence] for sequence in ("FLAIR", "T2", "T1", "T1ce")}
    volume, spacing, affine = brats_input(shuffled)
    flair = volumes["FLAIR"]
    assert volume.shape == (4, *flair.data.shape) and volume.dtype == np.float32
    assert spacing.dtype == np.float32 and spacing.shape == (3,)
    np.testing.assert_allclose(spacing, [1.25, 1.25, 1.25], rtol=1e-6)
    np.testing.assert_array_equal(affine, flair.affine)
    np.testing.assert_array_equal(volume[3], flair.data)
    # Channel order: each channel's sphere holds that sequence's own intensity.
    sphere = flair.data > _sphere_threshold("FLAIR")
    for index, channel in enumerate(BRATS_CHANNELS):
        core = np.median(volume[index][sphere])
        assert core == pytest.approx(BRATS_PHANTOM_SERIES[channel]["intensity"], rel=0.01)


def test_brats_input_names_missing_sequences(volumes: dict[str, Volume]) -> None:
    partial = {"FLAIR": volumes["FLAIR"], "T1": volumes["T1"]}
    with pytest.raises(InvalidInputError) as missing:
        brats_input(partial)
    assert missing.value.code == "sequences_missing"
    assert missing.value.detail["missing"] == ["T1ce", "T2"]
    assert "T1ce" in missing.value.message and "T2" in missing.value.message


# -- nifti_channels -----------------------------------------------------------------------------


def _nifti_affine() -> npt.NDArray[np.float64]:
    return np.array(
        [[-1.0, 0.0, 0.0, 90.0], [0.0, 1.2, 0.0, -126.0], [0.0, 0.0, 1.5, -72.0], [0, 0, 0, 1]]
    )


def _nifti_bytes(
    data: npt.NDArray[np.float32], affine: npt.NDArray[np.float64], *, nifti2: bool = False
) -> bytes:
    image_class = nibabel.Nifti2Image if nifti2 else nibabel.Nifti1Image
    payload: bytes = image_class(data, affine).to_bytes()  # type: ignore[no-untyped-call]
    return payload


def test_nifti_channels_round_trip() -> None:
    rng = np.random.default_rng(3)
    channels_last = rng.normal(size=(10, 12, 7, 4)).astype(np.float32)
    payload = gzip.compress(_nifti_bytes(channels_last, _nifti_affine()))
    data, affine = nifti_channels(payload)
    assert data.shape == (4, 10, 12, 7) and data.dtype == np.float32
    for channel in range(4):
        np.testing.assert_array_equal(data[channel], channels_last[..., channel])
    np.testing.assert_allclose(affine, _nifti_affine(), atol=1e-6)
    assert affine.dtype == np.float64
    # Uncompressed NIfTI-2 reads the same.
    plain = _nifti_bytes(channels_last, _nifti_affine(), nifti2=True)
    np.testing.assert_array_equal(nifti_channels(plain)[0], data)


def test_nifti_channels_rejects_other_shapes_and_damage() -> None:
    three_d = np.zeros((6, 6, 6), dtype=np.float32)
    with pytest.raises(InvalidInputError) as not_four:
        nifti_channels(gzip.compress(_nifti_bytes(three_d, np.eye(4))))
    assert not_four.value.code == "volume_not_four_channel"
    five_channels = np.zeros((6, 6, 6, 5), dtype=np.float32)
    with pytest.raises(InvalidInputError) as not_four:
        nifti_channels(gzip.compress(_nifti_bytes(five_channels, np.eye(4))))
    assert not_four.value.code == "volume_not_four_channel"
    with pytest.raises(InvalidInputError) as corrupt:
        nifti_channels(gzip.compress(b"not a nifti file at all")[:-6])
    assert corrupt.value.code == "corrupt_nifti"
