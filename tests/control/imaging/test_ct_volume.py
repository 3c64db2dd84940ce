"""A CT series as ``ct_head`` reads it: HU after rescale, slices first in position order, and
the series it refuses (tilted gantry, uneven spacing, values beyond INT16, not CT)."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest

from control.errors import InvalidInputError
from control.imaging.ct import head_ct_volume
from tests.fixtures.ct import ct_slice

STUDY, SERIES = "2.25.1", "2.25.2"


def _slices(count: int = 6, size: int = 32) -> list[pydicom.Dataset]:
    return [
        pydicom.dcmread(BytesIO(ct_slice(size, study_uid=STUDY, series_uid=SERIES, index=i)))
        for i in range(count)
    ]


def _error(datasets: list[pydicom.Dataset]) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as raised:
        head_ct_volume(datasets)
    return raised.value


def test_shuffled_slices_come_back_in_position_order_in_hounsfield_units():
    slices = _slices()
    shuffled = [slices[i] for i in (3, 0, 5, 1, 4, 2)]
    volume = head_ct_volume(shuffled)
    assert volume.hu.dtype == np.int16 and volume.hu.shape == (6, 32, 32)
    assert volume.source_index == (1, 3, 5, 0, 4, 2)
    assert volume.position_mm == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    assert volume.spacing_mm.tolist() == [1.0, 0.5, 0.5]
    for k, source in enumerate(volume.source_index):
        stored = shuffled[source].pixel_array.astype(np.int32)
        assert np.array_equal(volume.hu[k], stored - 1024)  # RescaleIntercept -1024
    assert volume.hu.min() < -900 and 20 < np.median(volume.hu[:, 12:20, 12:20]) < 50


def test_a_rescale_slope_is_applied_and_rounded_to_whole_hu():
    slices = _slices(2)
    for ds in slices:
        ds.RescaleSlope, ds.RescaleIntercept = 0.5, -512
    volume = head_ct_volume(slices)
    expected = np.rint(slices[0].pixel_array * 0.5 - 512).astype(np.int16)
    assert np.array_equal(volume.hu[0], expected)


def test_a_recorded_gantry_tilt_is_refused():
    slices = _slices(3)
    for ds in slices:
        ds.GantryDetectorTilt = -15
    error = _error(slices)
    assert error.code == "gantry_tilt" and "-15 degrees" in error.message


def test_slices_stepping_off_their_normal_are_a_tilted_gantry():
    slices = _slices(4)
    for k, ds in enumerate(slices):  # each slice 0.2 mm further posterior: ~11 degrees
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.2 * k, z]
    error = _error(slices)
    assert error.code == "gantry_tilt" and error.detail["degrees"] == pytest.approx(11.31, 0.01)


def test_uneven_spacing_is_refused_with_the_gaps():
    slices = _slices(5)
    del slices[2]  # a missing slice: gaps of 1 and 2 mm
    error = _error(slices)
    assert error.code == "series_inconsistent"
    assert error.detail["reason"] == "non_uniform_spacing" and error.detail["max_gap_mm"] == 2.0


def test_values_beyond_int16_are_refused_not_clipped():
    slices = _slices(2)
    slices[1].RescaleSlope = 100
    error = _error(slices)
    assert error.code == "hu_out_of_range" and error.detail["max"] > 32767


def test_a_series_that_is_not_ct_is_refused():
    slices = _slices(2)
    slices[0].Modality = "MR"
    assert _error(slices).code == "not_ct"
