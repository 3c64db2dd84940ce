"""numpy preprocessing shared with Triton: LUTs, inversion, windows, resizing, z-scores."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from training.data.preprocess import (
    WINDOW_PRESETS,
    apply_modality_lut,
    brain_zscore,
    dicom_to_cxr_input,
    invert_monochrome1,
    resize,
    resize_with_padding,
    undo_resize_with_padding,
    window,
    xray_to_float,
    zscore,
)


def test_modality_lut() -> None:
    stored = np.array([0, 1000, 2000], dtype=np.uint16)
    hu = apply_modality_lut(stored, 1.0, -1024.0)
    assert hu.dtype == np.float32 and hu.tolist() == [-1024.0, -24.0, 976.0]
    assert apply_modality_lut(stored, 0.5, 10.0).tolist() == [10.0, 510.0, 1010.0]


def test_invert_monochrome1_uses_max_value() -> None:
    pixels = np.array([0, 1, 4095, 5000], dtype=np.uint16)
    inverted = invert_monochrome1(pixels, 12)
    assert inverted.dtype == np.uint16 and inverted.tolist() == [4095, 4094, 0, 0]


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_xray_to_float_monochrome1_matches_inversion(bits: int) -> None:
    top = (1 << bits) - 1
    pixels = np.array([[0, top // 2], [top, 7]], dtype=np.uint16)
    m2 = xray_to_float(pixels, photometric="MONOCHROME2", bits_stored=bits)
    m1 = xray_to_float(pixels, photometric="MONOCHROME1", bits_stored=bits)
    assert m2.dtype == m1.dtype == np.float32
    assert m2[0, 0] == 0.0 and m2[1, 0] == 1.0
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    np.testing.assert_allclose(m1, invert_monochrome1(pixels, bits) / top, atol=1e-6)


def test_xray_to_float_applies_lut_and_rejects_colour() -> None:
    pixels = np.array([0, 255], dtype=np.uint8)
    out = xray_to_float(pixels, photometric="MONOCHROME2", bits_stored=8, slope=2, intercept=-5)
    assert out.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="MONOCHROME"):
        xray_to_float(pixels, photometric="RGB", bits_stored=8)


def test_window_presets() -> None:
    center, width = WINDOW_PRESETS["lung"]
    assert (center, width) == (-600, 1500)
    out = window(np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0]), center, width)
    assert out.dtype == np.float32 and out.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    brain = window(np.array([0.0, 40.0, 80.0]), *WINDOW_PRESETS["brain"])
    assert brain.tolist() == [0.0, 0.5, 1.0]
    assert set(WINDOW_PRESETS) == {"lung", "mediastinum", "brain", "bone"}
    with pytest.raises(ValueError):
        window(np.zeros(2), 0, 0)


@pytest.mark.parametrize("shape", [(60, 100), (100, 60), (64, 64), (301, 77)])
def test_resize_with_padding_geometry(shape: tuple[int, int]) -> None:
    image = np.ones(shape, dtype=np.float32)
    out, scale, (pad_y, pad_x) = resize_with_padding(image, 32)
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert scale == pytest.approx(32 / max(shape))
    new_h, new_w = round(shape[0] * scale), round(shape[1] * scale)
    assert 32 - new_h - 2 * pad_y in (0, 1) and 32 - new_w - 2 * pad_x in (0, 1)  # centred
    np.testing.assert_allclose(out[pad_y : pad_y + new_h, pad_x : pad_x + new_w], 1.0)
    assert out.sum() == pytest.approx(new_h * new_w)  # padding is zero


def test_resize_with_padding_maps_points_back() -> None:
    image = np.zeros((200, 400), dtype=np.float32)
    image[90:110, 290:310] = 1.0  # a bright square centred on (y=99.5, x=299.5)
    out, scale, (pad_y, pad_x) = resize_with_padding(image, 100)
    ys, xs = np.nonzero(out > 0.5)
    centre_y = (ys.mean() - pad_y + 0.5) / scale - 0.5
    centre_x = (xs.mean() - pad_x + 0.5) / scale - 0.5
    assert centre_y == pytest.approx(99.5, abs=1.0) and centre_x == pytest.approx(299.5, abs=1.0)


def test_undo_resize_with_padding_round_trip() -> None:
    yy, xx = np.mgrid[0:120, 0:200].astype(np.float32)
    smooth = np.sin(yy / 20.0) + np.cos(xx / 25.0)
    out, scale, pad = resize_with_padding(smooth, 100)
    back = undo_resize_with_padding(out, smooth.shape, scale, pad)
    assert back.shape == smooth.shape and back.dtype == np.float32
    assert np.abs(back - smooth)[2:-2, 2:-2].max() < 0.05


def test_resize_preserves_mean_when_shrinking() -> None:
    checker = (np.indices((256, 256)).sum(axis=0) % 2).astype(np.float32)
    small = resize(checker, (32, 32))
    np.testing.assert_allclose(small, 0.5, atol=1e-6)  # block averaging: no aliasing


def test_zscore() -> None:
    out = zscore(np.array([1.0, 3.0]), 2.0, 0.5)
    assert out.dtype == np.float32 and out.tolist() == [-2.0, 2.0]
    with pytest.raises(ValueError):
        zscore(np.zeros(1), 0.0, 0.0)


def test_brain_zscore_keeps_background_and_standardises_brain() -> None:
    rng = np.random.default_rng(0)
    volume = np.zeros((4, 10, 10, 10), dtype=np.float32)
    volume[:, 2:8, 2:8, 2:8] = rng.uniform(100, 900, size=(4, 6, 6, 6))
    volume[3] = 0.0  # an empty channel stays empty
    out = brain_zscore(volume)
    assert out.dtype == np.float32 and out.shape == volume.shape
    assert np.all(out[volume == 0] == 0)
    for channel in range(3):
        brain = out[channel][volume[channel] != 0]
        assert brain.mean() == pytest.approx(0.0, abs=1e-5)
        assert brain.std() == pytest.approx(1.0, abs=1e-5)
    assert volume.max() > 100  # the input is untouched


def _radiograph(photometric: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pixels = np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def test_dicom_to_cxr_input_monochrome1_and_2() -> None:
    m2 = dicom_to_cxr_input(_radiograph("MONOCHROME2"))
    m1 = dicom_to_cxr_input(_radiograph("MONOCHROME1"))
    assert m2.dtype == np.float32 and m2.shape == (2, 2)
    assert m2[0, 0] == 0.0 and m2[1, 1] == 1.0
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_dicom_to_cxr_input_real_file_with_rescale() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = dicom_to_cxr_input(ds)
    assert out.shape == (ds.Rows, ds.Columns) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.std() > 0
