"""The BraTS DICOM Segmentation: codes, algorithm, references, frames on the right slices."""

from __future__ import annotations

import random
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import SegmentationStorage

from control.results.codes import BRATS_SEGMENT_CATEGORY, BRATS_SEGMENTS
from control.results.seg import build_brats_seg, source_slice_order
from tests.control.results import (
    FLAIR_SHAPE,
    brats_result,
    dciodvfy_lines,
    encoded,
    expected_frame,
    flair_series,
    write,
)

#: (case, how the caller orders the source instances)
SLICE_ORDERS = [
    ("acquired", lambda series: list(series)),
    ("reversed", lambda series: list(reversed(series))),
    ("shuffled", lambda series: random.Random(7).sample(list(series), len(series))),
]

#: (mask_source, algorithm type the segments must carry)
ALGORITHM_TYPES = [("ai", "AUTOMATIC"), ("edited", "SEMIAUTOMATIC")]


def _read(seg: pydicom.Dataset, tmp_path: Path) -> hd.seg.Segmentation:
    return hd.seg.segread(write(seg, tmp_path / "seg.dcm"))


@pytest.mark.parametrize(("case", "order"), SLICE_ORDERS, ids=[c for c, _ in SLICE_ORDERS])
def test_frames_match_each_source_slice(case: str, order, tmp_path: Path) -> None:
    series = flair_series()
    result = brats_result(order(series))

    seg = _read(build_brats_seg(result), tmp_path)

    for ds in series:
        pixels = seg.get_pixels_by_source_instance(
            [ds.SOPInstanceUID], segment_numbers=[1, 2, 3], combine_segments=True
        )[0]
        np.testing.assert_array_equal(pixels, expected_frame(ds), err_msg=case)


def test_mask_has_all_three_labels_on_several_slices() -> None:
    """Guard for the frame test: the generated mask is asymmetric enough to catch flips."""
    series = flair_series()
    frames = [expected_frame(ds) for ds in series]
    assert {1, 2, 3} <= set(np.unique(np.stack(frames)).tolist())
    assert not np.array_equal(frames[0], frames[-1])
    assert not all(np.array_equal(frame, frame[:, ::-1]) for frame in frames)


def test_flipped_mask_is_detected(tmp_path: Path) -> None:
    series = flair_series()
    labels = brats_result(series).labels[:, :, ::-1].copy()

    seg = _read(build_brats_seg(brats_result(series, labels=labels)), tmp_path)

    mismatches = 0
    for ds in series:
        pixels = seg.get_pixels_by_source_instance(
            [ds.SOPInstanceUID], segment_numbers=[1, 2, 3], combine_segments=True
        )[0]
        mismatches += not np.array_equal(pixels, expected_frame(ds))
    assert mismatches > 0


def test_source_slice_order_follows_the_normal() -> None:
    series = flair_series()
    shuffled = random.Random(3).sample(series, len(series))

    order = source_slice_order(shuffled)

    z = [float(shuffled[index].ImagePositionPatient[2]) for index in order]
    assert z == sorted(z)


@pytest.mark.parametrize(("mask_source", "algorithm_type"), ALGORITHM_TYPES)
def test_segments_codes_and_algorithm(mask_source: str, algorithm_type: str, tmp_path) -> None:
    seg = _read(build_brats_seg(brats_result(mask_source=mask_source)), tmp_path)

    assert seg.SOPClassUID == SegmentationStorage
    assert seg.SegmentationType == "BINARY"
    assert seg.number_of_segments == len(BRATS_SEGMENTS)
    for number, label, property_type in BRATS_SEGMENTS:
        description = seg.get_segment_description(number)
        assert description.segment_label == label
        assert description.segmented_property_category == BRATS_SEGMENT_CATEGORY
        assert description.segmented_property_type == property_type
        assert description.algorithm_type.value == algorithm_type
        algorithm = description.algorithm_identification[0]
        assert algorithm.AlgorithmName == "brats"
        assert algorithm.AlgorithmVersion == "3"
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
        assert algorithm.AlgorithmParameters == "training data=synthetic,training run=run-7f3a"


def test_identifiers_and_references_are_copied(tmp_path: Path) -> None:
    series = flair_series()
    result = brats_result(series)

    seg = _read(build_brats_seg(result), tmp_path)

    assert seg.StudyInstanceUID == series[0].StudyInstanceUID
    assert seg.PatientID == series[0].PatientID
    assert seg.PatientName == series[0].PatientName
    assert seg.FrameOfReferenceUID == series[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID == result.seg_series_uid
    assert seg.SOPInstanceUID == result.seg_sop_uid
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == series[0].SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in series
    }
    assert seg.ContentDate == "20260304"
    assert seg.ContentTime == "101112"
    assert "synthetic training data" in seg.SeriesDescription


def test_headers_without_pixel_data_give_the_same_object() -> None:
    series = flair_series()
    labels = brats_result(series).labels
    headers = []
    for ds in series:
        header = pydicom.Dataset(ds)
        del header.PixelData
        headers.append(header)

    full = build_brats_seg(brats_result(series, labels=labels))
    bare = build_brats_seg(brats_result(headers, labels=labels))

    assert encoded(full) == encoded(bare)


def test_same_content_gives_the_same_bytes() -> None:
    series = flair_series()
    first = encoded(build_brats_seg(brats_result(series)))
    second = encoded(build_brats_seg(brats_result(series)))
    assert first == second


def test_empty_mask_keeps_every_segment_and_frame(tmp_path: Path) -> None:
    series = flair_series()
    empty = np.zeros((FLAIR_SHAPE[1], FLAIR_SHAPE[0], FLAIR_SHAPE[2]), dtype=np.uint8)

    seg = _read(build_brats_seg(brats_result(series, labels=empty)), tmp_path)

    assert seg.number_of_segments == 3
    assert int(seg.NumberOfFrames) == 3 * len(series)
    assert not seg.pixel_array.any()


@pytest.mark.parametrize(
    ("labels_shape", "value"),
    [((FLAIR_SHAPE[0], FLAIR_SHAPE[1], FLAIR_SHAPE[2]), 0), ((12, 10, 6), 4)],
    ids=["transposed_shape", "unknown_label"],
)
def test_rejects_bad_label_maps(labels_shape, value) -> None:
    labels = np.full(labels_shape, value, dtype=np.uint8)
    with pytest.raises(ValueError):
        build_brats_seg(brats_result(labels=labels))


@pytest.mark.parametrize(("mask_source", "_"), ALGORITHM_TYPES)
def test_dciodvfy_reports_no_error(mask_source: str, _: str, tmp_path: Path) -> None:
    path = write(build_brats_seg(brats_result(mask_source=mask_source)), tmp_path / "seg.dcm")

    lines = dciodvfy_lines(path)

    assert [line for line in lines if line.startswith("Error")] == []
