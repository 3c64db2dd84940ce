"""What the pipelines send to Triton, computed without Triton: CXR pixels and NIfTI files."""

from __future__ import annotations

import gzip
from io import BytesIO

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels.processing import apply_modality_lut

from control.errors import InvalidInputError
from control.imaging.volumes import nifti_bytes
from control.served.cxr import cxr_pixels
from tests.fixtures.dx import chest_dx


def _reference(payload: bytes) -> np.ndarray:
    dataset = pydicom.dcmread(BytesIO(payload))
    values = apply_modality_lut(dataset.pixel_array, dataset)
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("monochrome1", [False, True])
def test_radiograph_pixels_are_the_stored_values_with_the_invert_flag(monochrome1):
    payload = chest_dx(96, monochrome1=monochrome1)
    pixels, invert = cxr_pixels(payload)
    assert pixels.dtype == np.uint16 and pixels.shape == (96, 96)
    np.testing.assert_array_equal(pixels, _reference(payload))
    assert invert is monochrome1


def test_rescaled_pixels_go_through_the_modality_lut_and_are_clipped():
    with open(get_testdata_file("CT_small.dcm"), "rb") as handle:
        payload = handle.read()
    pixels, invert = cxr_pixels(payload)
    reference = _reference(payload)
    np.testing.assert_array_equal(pixels, reference)
    raw = pydicom.dcmread(BytesIO(payload)).pixel_array
    assert not np.array_equal(pixels, raw.astype(np.uint16))  # the intercept was applied
    assert invert is False


def test_colour_images_are_refused():
    with open(get_testdata_file("SC_rgb_small_odd.dcm"), "rb") as handle:
        payload = handle.read()
    with pytest.raises(InvalidInputError) as error:
        cxr_pixels(payload)
    assert error.value.code == "unsupported_photometric"


def test_nifti_bytes_are_reproducible_and_keep_geometry():
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[1:3, 2:4, 3] = 2
    affine = np.diag([1.5, 1.2, 2.0, 1.0])
    first, second = nifti_bytes(labels, affine), nifti_bytes(labels, affine)
    assert first == second
    image = nib.Nifti1Image.from_bytes(gzip.decompress(first))
    np.testing.assert_array_equal(np.asarray(image.dataobj), labels)
    np.testing.assert_allclose(image.affine, affine)
