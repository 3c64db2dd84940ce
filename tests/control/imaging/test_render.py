"""Tests for control.imaging.render: DICOM frame rendering, PNG encoding and overlays."""

from __future__ import annotations

import copy
from io import BytesIO
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from control.errors import InvalidInputError
from control.imaging.render import (
    SEGMENT_COLOURS,
    Window,
    apply_window,
    cam_overlay,
    default_window,
    encode_png,
    frame_values,
    heat_colormap,
    render_frame,
    segmentation_overlay,
    slice_count,
    volume_slice,
    volume_window,
)


def _read(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert path is not None, name
    return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def ct() -> pydicom.Dataset:
    return _read("CT_small.dcm")


def _synthetic(frames: npt.NDArray[Any], photometric: str = "MONOCHROME2") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(frames, photometric, frames.dtype.itemsize * 8)
    return ds


def _code(excinfo: pytest.ExceptionInfo[InvalidInputError]) -> str:
    return excinfo.value.code


# --- frame_values -----------------------------------------------------------------------


def test_ct_values_are_stored_values_after_rescale(ct: pydicom.Dataset) -> None:
    values = frame_values(ct)

    assert values.dtype == np.float32
    assert values.shape == (128, 128)
    expected = ct.pixel_array.astype(np.float64) * float(ct.RescaleSlope) + float(
        ct.RescaleIntercept
    )
    np.testing.assert_array_equal(values, expected.astype(np.float32))
    assert float(ct.RescaleIntercept) == -1024.0
    assert values.min() < 0  # Hounsfield units, not stored values


def test_values_without_rescale_are_stored_values() -> None:
    mr = _read("MR_small.dcm")
    assert "RescaleSlope" not in mr

    np.testing.assert_array_equal(frame_values(mr), mr.pixel_array.astype(np.float32))


def test_multi_frame_returns_the_requested_frame() -> None:
    dose = _read("rtdose.dcm")
    all_frames = dose.pixel_array
    assert all_frames.shape[0] == 15

    np.testing.assert_array_equal(frame_values(dose, 14), all_frames[14].astype(np.float32))
    np.testing.assert_array_equal(frame_values(dose, 3), all_frames[3].astype(np.float32))
    assert not np.array_equal(all_frames[3], all_frames[14])


@pytest.mark.parametrize(
    ("name", "frame", "frames"), [("rtdose.dcm", 15, 15), ("rtdose.dcm", -1, 15)]
)
def test_frame_out_of_range(name: str, frame: int, frames: int) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        frame_values(_read(name), frame)

    assert _code(excinfo) == "frame_out_of_range"
    assert excinfo.value.detail == {"frame": frame, "frames": frames}


def test_single_frame_image_has_only_frame_zero(ct: pydicom.Dataset) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        render_frame(ct, 1)

    assert _code(excinfo) == "frame_out_of_range"


def test_enhanced_multi_frame_rescale_comes_from_the_frame_functional_group() -> None:
    stored = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    ds = _synthetic(stored)
    ds.PerFrameFunctionalGroupsSequence = []
    for slope, intercept in ((2.0, -10.0), (0.5, 100.0)):
        transform = Dataset()
        transform.RescaleSlope = slope
        transform.RescaleIntercept = intercept
        group = Dataset()
        group.PixelValueTransformationSequence = [transform]
        ds.PerFrameFunctionalGroupsSequence.append(group)

    np.testing.assert_array_equal(frame_values(ds, 0), stored[0] * 2.0 - 10.0)
    np.testing.assert_array_equal(frame_values(ds, 1), stored[1] * 0.5 + 100.0)


def test_shared_functional_group_rescale_applies_to_every_frame() -> None:
    stored = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    ds = _synthetic(stored)
    transform = Dataset()
    transform.RescaleSlope = 3.0
    transform.RescaleIntercept = 1.0
    shared = Dataset()
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]

    np.testing.assert_array_equal(frame_values(ds, 1), stored[1] * 3.0 + 1.0)


def test_rgb_image_is_returned_as_uint8_rgb() -> None:
    rgb = _read("examples_rgb_color.dcm")

    values = frame_values(rgb)

    assert values.dtype == np.uint8
    assert values.shape == (240, 320, 3)
    np.testing.assert_array_equal(values, rgb.pixel_array)


def test_ybr_image_is_converted_to_rgb() -> None:
    ybr = frame_values(_read("SC_ybr_full_422_uncompressed.dcm"))
    rgb = frame_values(_read("SC_rgb_rle.dcm"))  # the same test pattern stored as RGB

    assert ybr.shape == rgb.shape == (100, 100, 3)
    assert np.abs(ybr.astype(int) - rgb.astype(int)).max() <= 8
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_sixteen_bit_rgb_keeps_the_top_eight_bits() -> None:
    deep = frame_values(_read("SC_rgb_rle_16bit.dcm"))

    np.testing.assert_array_equal(deep, frame_values(_read("SC_rgb_rle.dcm")))


def test_palette_colour_image_is_looked_up_to_rgb() -> None:
    palette = _read("examples_palette.dcm")
    lut = palette.RedPaletteColorLookupTableDescriptor

    values = frame_values(palette)

    assert values.dtype == np.uint8
    assert values.shape == (palette.Rows, palette.Columns, 3)
    index = int(palette.pixel_array[100, 400]) - lut[1]
    red = np.frombuffer(palette.RedPaletteColorLookupTableData, dtype="<u2")
    assert values[100, 400, 0] == red[index] >> 8


def test_unsupported_photometric_interpretation(ct: pydicom.Dataset) -> None:
    hsv = copy.deepcopy(ct)
    hsv.PhotometricInterpretation = "HSV"

    with pytest.raises(InvalidInputError) as excinfo:
        frame_values(hsv)

    assert _code(excinfo) == "unsupported_photometric"


# --- windows ----------------------------------------------------------------------------


def test_default_window_comes_from_the_tags() -> None:
    mr = _read("MR_small.dcm")

    assert default_window(mr, frame_values(mr)) == Window(center=600.0, width=1600.0)


def test_default_window_uses_the_first_of_several_tag_values(ct: pydicom.Dataset) -> None:
    tagged = copy.deepcopy(ct)
    tagged.WindowCenter = [40, 400]
    tagged.WindowWidth = [80, 2000]

    assert default_window(tagged, frame_values(tagged)) == Window(center=40.0, width=80.0)


def test_default_window_from_frame_voi_functional_group() -> None:
    ds = _synthetic(np.zeros((2, 4, 4), dtype=np.uint16))
    voi = Dataset()
    voi.WindowCenter = 50
    voi.WindowWidth = 20
    group = Dataset()
    group.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [group]

    assert default_window(ds, frame_values(ds, 1), frame=1) == Window(center=50.0, width=20.0)


def _percentile_window(values: npt.NDArray[Any]) -> Window:
    low, high = np.percentile(values, [0.5, 99.5])
    return Window(center=(low + high) / 2, width=max(high - low, 1.0))


def test_default_window_without_tags_spans_the_percentiles(ct: pydicom.Dataset) -> None:
    assert "WindowCenter" not in ct
    values = frame_values(ct)

    window = default_window(ct, values)

    expected = _percentile_window(values)
    assert window.center == pytest.approx(expected.center)
    assert window.width == pytest.approx(expected.width)
    assert window.width > 100  # a real CT slice spans hundreds of HU


@pytest.mark.parametrize("width", [0, -5, None])
def test_default_window_ignores_unusable_tags(ct: pydicom.Dataset, width: float | None) -> None:
    tagged = copy.deepcopy(ct)
    tagged.WindowCenter = 40
    if width is not None:
        tagged.WindowWidth = width
    values = frame_values(tagged)

    assert default_window(tagged, values) == pytest.approx(_percentile_window(values))


def test_default_window_of_a_flat_image_has_width_one() -> None:
    flat = np.full((8, 8), 7.0, dtype=np.float32)

    assert default_window(Dataset(), flat) == Window(center=7.0, width=1.0)


def test_apply_window_endpoints_and_midpoint() -> None:
    window = Window(center=40.0, width=400.0)
    values = np.array([[-160.0, 40.0, 240.0], [-1000.0, 3000.0, -60.0]], dtype=np.float32)

    image = apply_window(values, window)

    assert image.dtype == np.uint8
    assert image.shape == values.shape
    assert image.tolist() == [[0, 128, 255], [0, 255, 64]]


def test_apply_window_inverted() -> None:
    values = np.array([-160.0, 40.0, 240.0, 3000.0])

    image = apply_window(values, Window(center=40.0, width=400.0), invert=True)

    assert image.tolist() == [255, 127, 0, 0]


def test_apply_window_maps_nan_to_black() -> None:
    image = apply_window(np.array([np.nan, 0.5]), Window(center=0.0, width=2.0))

    assert image.tolist() == [0, 191]


@pytest.mark.parametrize(
    ("center", "width"),
    [(0.0, 0.0), (0.0, -1.0), (0.0, float("nan")), (0.0, float("inf")), (float("nan"), 1.0)],
)
def test_apply_window_rejects_bad_windows(center: float, width: float) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        apply_window(np.zeros((2, 2)), Window(center=center, width=width))

    assert _code(excinfo) == "invalid_window"


# --- render_frame -----------------------------------------------------------------------


def test_render_frame_uses_the_default_window(ct: pydicom.Dataset) -> None:
    values = frame_values(ct)

    image = render_frame(ct)

    np.testing.assert_array_equal(image, apply_window(values, default_window(ct, values)))
    assert image.min() == 0
    assert image.max() == 255


def test_render_frame_with_an_explicit_window(ct: pydicom.Dataset) -> None:
    window = Window(center=0.0, width=100.0)

    np.testing.assert_array_equal(
        render_frame(ct, 0, window), apply_window(frame_values(ct), window)
    )


def test_monochrome1_is_displayed_inverted(ct: pydicom.Dataset) -> None:
    inverted = copy.deepcopy(ct)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    window = Window(center=40.0, width=400.0)

    np.testing.assert_array_equal(
        render_frame(inverted, 0, window), 255 - render_frame(ct, 0, window)
    )


def test_colour_frame_ignores_the_window() -> None:
    rgb = _read("examples_rgb_color.dcm")

    image = render_frame(rgb, 0, Window(center=0.0, width=1.0))

    np.testing.assert_array_equal(image, rgb.pixel_array)


# --- encode_png -------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, npt.NDArray[Any]]:
    with Image.open(BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.mode, np.asarray(image)


def test_png_round_trip_grey(ct: pydicom.Dataset) -> None:
    image = render_frame(ct)

    mode, decoded = _decode(encode_png(image))

    assert mode == "L"
    np.testing.assert_array_equal(decoded, image)


def test_png_round_trip_rgb_of_a_non_contiguous_view() -> None:
    rgb = render_frame(_read("examples_rgb_color.dcm"))[::-1, ::2]

    mode, decoded = _decode(encode_png(rgb))

    assert mode == "RGB"
    np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4), dtype=np.float32),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros(4, np.uint8),
    ],
)
def test_png_rejects_other_arrays(image: npt.NDArray[Any]) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        encode_png(image)

    assert _code(excinfo) == "invalid_image"


# --- CAMs -------------------------------------------------------------------------------


def test_heat_colormap_runs_from_blue_to_red() -> None:
    colours = heat_colormap(np.array([[0, 128, 255]], dtype=np.uint8))

    assert colours.shape == (1, 3, 3)
    assert colours.dtype == np.uint8
    cold, middle, hot = colours[0].astype(int)
    assert cold[2] > 100 and cold[0] == 0 and cold[1] == 0
    assert hot[0] > 100 and hot[1] == 0 and hot[2] == 0
    assert middle[1] > 200  # green in the middle of the jet map


def test_cam_overlay_reddens_only_the_hot_region() -> None:
    base = np.full((64, 64), 100, dtype=np.uint8)
    cam = np.zeros((16, 16), dtype=np.uint8)
    cam[:4, :4] = 255  # the top-left sixteenth is hot

    overlay = cam_overlay(base, cam, alpha=0.5)

    assert overlay.shape == (64, 64, 3)
    assert overlay.dtype == np.uint8
    hot, cold = overlay[2, 2].astype(int), overlay[60, 60].astype(int)
    assert cold.tolist() == [100, 100, 100]  # cold pixels keep the image exactly
    assert hot[0] > cold[0]
    assert hot[1] < cold[1] - 40
    assert hot[2] < cold[2] - 40


def test_cam_overlay_on_an_rgb_base() -> None:
    base = np.zeros((10, 20, 3), dtype=np.uint8)
    base[..., 2] = 200
    cam = np.full((5, 10), 255, dtype=np.uint8)

    overlay = cam_overlay(base, cam, alpha=1.0)

    assert overlay.shape == (10, 20, 3)
    np.testing.assert_array_equal(overlay, heat_colormap(np.full((10, 20), 255, np.uint8)))


def test_cam_overlay_with_zero_alpha_is_the_base() -> None:
    base = np.arange(100, dtype=np.uint8).reshape(10, 10)

    overlay = cam_overlay(base, np.full((3, 3), 255, np.uint8), alpha=0.0)

    np.testing.assert_array_equal(overlay, np.stack([base] * 3, axis=-1))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_overlays_reject_a_bad_alpha(alpha: float) -> None:
    base = np.zeros((4, 4), dtype=np.uint8)
    for overlay in (cam_overlay, segmentation_overlay):
        with pytest.raises(InvalidInputError) as excinfo:
            overlay(base, np.zeros((4, 4), dtype=np.uint8), alpha)
        assert _code(excinfo) == "invalid_alpha"


# --- volumes ----------------------------------------------------------------------------

# A volume of shape (I, J, K) = (5, 6, 7) with a marker at the patient's right (i = 4),
# posterior (j = 0) and inferior (k = 0) corner, and a second at left (i = 0), anterior
# (j = 5), superior (k = 6).
_SHAPE = (5, 6, 7)


@pytest.fixture
def marked_volume() -> npt.NDArray[np.int16]:
    volume = np.zeros(_SHAPE, dtype=np.int16)
    volume[4, 0, 0] = 1
    volume[0, 5, 6] = 2
    return volume


def _position(image: npt.NDArray[Any], marker: int) -> tuple[int, int]:
    rows, columns = np.nonzero(image == marker)
    assert len(rows) == 1
    return int(rows[0]), int(columns[0])


def test_axial_slice_anterior_up_patient_right_on_the_left(
    marked_volume: npt.NDArray[np.int16],
) -> None:
    bottom = volume_slice(marked_volume, "axial", 0)

    assert bottom.shape == (6, 5)  # rows along j, columns along i
    assert _position(bottom, 1) == (5, 0)  # posterior → last row; right → first column
    assert _position(volume_slice(marked_volume, "axial", 6), 2) == (0, 4)


def test_coronal_slice_superior_up_patient_right_on_the_left(
    marked_volume: npt.NDArray[np.int16],
) -> None:
    back = volume_slice(marked_volume, "coronal", 0)

    assert back.shape == (7, 5)  # rows along k, columns along i
    assert _position(back, 1) == (6, 0)  # inferior → last row; right → first column
    assert _position(volume_slice(marked_volume, "coronal", 5), 2) == (0, 4)


def test_sagittal_slice_superior_up_anterior_on_the_left(
    marked_volume: npt.NDArray[np.int16],
) -> None:
    right = volume_slice(marked_volume, "sagittal", 4)

    assert right.shape == (7, 6)  # rows along k, columns along j
    assert _position(right, 1) == (6, 5)  # inferior → last row; posterior → last column
    assert _position(volume_slice(marked_volume, "sagittal", 0), 2) == (0, 0)


def test_volume_slice_is_a_contiguous_copy(marked_volume: npt.NDArray[np.int16]) -> None:
    section = volume_slice(marked_volume, "axial", 0)
    section[:] = 9

    assert section.flags["C_CONTIGUOUS"]
    assert section.dtype == np.int16
    assert marked_volume[4, 0, 0] == 1


@pytest.mark.parametrize(("plane", "count"), [("sagittal", 5), ("coronal", 6), ("axial", 7)])
def test_slice_count(plane: Any, count: int, marked_volume: npt.NDArray[np.int16]) -> None:
    assert slice_count(_SHAPE, plane) == count
    volume_slice(marked_volume, plane, count - 1)
    with pytest.raises(InvalidInputError) as excinfo:
        volume_slice(marked_volume, plane, count)
    assert _code(excinfo) == "slice_out_of_range"
    assert excinfo.value.detail == {"plane": plane, "index": count, "count": count}


def test_negative_slice_is_out_of_range(marked_volume: npt.NDArray[np.int16]) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        volume_slice(marked_volume, "axial", -1)

    assert _code(excinfo) == "slice_out_of_range"


def test_unknown_plane(marked_volume: npt.NDArray[np.int16]) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        volume_slice(marked_volume, "oblique", 0)  # type: ignore[arg-type]
    assert _code(excinfo) == "invalid_plane"

    with pytest.raises(InvalidInputError) as excinfo:
        slice_count(_SHAPE, "transverse")  # type: ignore[arg-type]
    assert _code(excinfo) == "invalid_plane"


def test_volume_slice_rejects_a_non_3d_array() -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        volume_slice(np.zeros((4, 4)), "axial", 0)

    assert _code(excinfo) == "invalid_image"


def test_segmentation_overlay_colours() -> None:
    base = np.full((2, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 1, 2], [3, 7, 0]], dtype=np.uint8)

    overlay = segmentation_overlay(base, labels, alpha=0.5)

    assert overlay.shape == (2, 3, 3)
    assert overlay.dtype == np.uint8
    assert SEGMENT_COLOURS == {1: (255, 0, 0), 2: (0, 200, 0), 3: (255, 220, 0)}
    assert overlay[0, 0].tolist() == [100, 100, 100]
    assert overlay[0, 1].tolist() == [178, 50, 50]  # 0.5 * 100 + 0.5 * (255, 0, 0), rounded
    assert overlay[0, 2].tolist() == [50, 150, 50]
    assert overlay[1, 0].tolist() == [178, 160, 50]
    assert overlay[1, 1].tolist() == [100, 100, 100]  # unknown label: untouched


def test_segmentation_overlay_full_alpha_is_the_label_colour() -> None:
    base = np.full((1, 2), 30, dtype=np.uint8)

    overlay = segmentation_overlay(base, np.array([[2, 0]], dtype=np.int16), alpha=1.0)

    assert overlay.tolist() == [[[0, 200, 0], [30, 30, 30]]]


def test_segmentation_overlay_shape_mismatch() -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        segmentation_overlay(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))

    assert _code(excinfo) == "shape_mismatch"
    assert excinfo.value.detail == {"labels_shape": [4, 5], "image_shape": [4, 4]}


def test_volume_window_ignores_the_zero_background() -> None:
    volume = np.zeros((20, 20, 20), dtype=np.float32)
    foreground = np.linspace(100.0, 1100.0, 1000, dtype=np.float32)
    volume[:10, :10, :10] = foreground.reshape(10, 10, 10)

    window = volume_window(volume)

    expected = _percentile_window(foreground)
    assert window.center == pytest.approx(expected.center)
    assert window.width == pytest.approx(expected.width)
    assert window.center == pytest.approx(600.0, abs=1.0)


def test_volume_window_of_an_empty_volume() -> None:
    assert volume_window(np.zeros((3, 3, 3), dtype=np.float32)) == Window(center=0.0, width=1.0)
    assert volume_window(np.full((3, 3, 3), 5.0)) == Window(center=5.0, width=1.0)
