"""DICOM Segmentation of a signed-off brain tumour result (BraTS labels NCR, ED, ET).

:func:`build_brats_seg` turns the label map in force (the AI's, or the radiologist's edit)
into a BINARY Segmentation with one segment per BraTS label, on the frames of the source
FLAIR series. The label map is in the voxel order of
:func:`control.imaging.volumes.series_volume`: ``labels[i, j, k]`` is column ``i``, row
``j`` of the ``k``-th slice when the slices are sorted along their normal. The builder sorts
the source instances the same way and writes frame ``labels[:, :, k].T`` for the instance at
sorted position ``k``, so the mask lands on the slice it was computed on whatever order the
caller passes the instances in.

Empty frames are kept (``omit_empty_frames=False``): every segment has one frame per source
slice, so a segment the model did not find (an empty mask) is still a described, referencable
segment and the SEG is never invalid for lack of frames. The cost is size (for a 240x240x155
FLAIR, 3 x 155 bit-packed frames, about 3.3 MB).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.uid import generate_uid

from control.results import codes
from control.results.content import BratsResult
from control.results.sr import (
    MANUFACTURER,
    evidence_header,
    person_name,
    quiet_person_name_warnings,
    stamp_times,
)

__all__ = ["build_brats_seg", "source_slice_order"]

_SEG_SERIES_NUMBER = 9002
_LO_MAX = 64


def build_brats_seg(result: BratsResult) -> pydicom.Dataset:
    """A BINARY Segmentation of ``result.labels`` on the source FLAIR series.

    Promises: segments 1 NCR (SCT Necrosis), 2 ED (SCT Edema), 3 ET (NCIt Enhancing Lesion),
    category SCT "Morphologically Abnormal Structure", anatomic region Brain; algorithm type
    AUTOMATIC, or SEMIAUTOMATIC when ``result.mask_source == "edited"``, with an algorithm
    identification (family DCM "Artificial Intelligence", name, version, source MedVision,
    AlgorithmParameters ``training data=synthetic|clinical,training run=<MLflow run id>``);
    one frame per segment and source instance, each frame referencing its source instance
    (SourceImageSequence / DerivationImageSequence) and carrying its plane position; the
    source series in ReferencedSeriesSequence; patient and study attributes copied from the
    first source instance; dates and times from ``result.verifier.verified_at``; UIDs from
    the input (DimensionOrganizationUID and segment tracking UIDs derived from
    ``seg_sop_uid``).

    ``source_images`` need the header only (no PixelData): SOP Class/Instance, Study/Series
    Instance and Frame of Reference UIDs, Rows, Columns, PixelSpacing,
    ImageOrientationPatient, ImagePositionPatient (and SliceThickness where known). Raises
    ``ValueError`` when ``labels`` does not have the shape ``(Columns, Rows, instances)`` or
    holds values outside 0..3.
    """
    sources = [evidence_header(ds) for ds in result.source_images]
    if not sources:
        raise ValueError("a segmentation needs the source images it is defined on")
    frames = _frames_in_source_order(np.asarray(result.labels), sources)
    algorithm_type = (
        hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
        if result.mask_source == "edited"
        else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    )
    parameters = {"training data": "synthetic" if result.algorithm.synthetic else "clinical"}
    if result.algorithm.training_run:
        parameters["training run"] = result.algorithm.training_run
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=result.algorithm.name,
        family=codes.ALGORITHM_FAMILY,
        version=result.algorithm.version,
        source=MANUFACTURER,
        parameters=parameters,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=codes.BRATS_SEGMENT_CATEGORY,
            segmented_property_type=property_type,
            algorithm_type=algorithm_type,
            algorithm_identification=algorithm_id,
            tracking_uid=generate_uid(
                entropy_srcs=["medvision-segment", result.seg_sop_uid, str(number)]
            ),
            tracking_id=f"BraTS {label}",
            anatomic_regions=[codes.BRAIN],
        )
        for number, label, property_type in codes.BRATS_SEGMENTS
    ]
    edited = "edited by the radiologist" if result.mask_source == "edited" else "AI"
    synthetic = ", synthetic training data" if result.algorithm.synthetic else ""
    with quiet_person_name_warnings():
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=result.seg_series_uid,
            series_number=_SEG_SERIES_NUMBER,
            sop_instance_uid=result.seg_sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=result.algorithm.name[:_LO_MAX],
            software_versions=result.algorithm.version[:_LO_MAX],
            # Type 1: the training run identifies the trained model instance.
            device_serial_number=(result.algorithm.training_run or result.algorithm.version)[
                :_LO_MAX
            ],
            content_label="BRATS",
            content_description=f"Brain tumour segmentation ({edited}{synthetic})"[:_LO_MAX],
            content_creator_name=person_name(result.verifier.name),
            series_description=f"AI brain tumour segmentation ({edited}{synthetic})"[:_LO_MAX],
            omit_empty_frames=False,
        )
    stamp_times(seg, result.verifier.verified_at)
    _fix_dimension_organization_uid(seg, result.seg_sop_uid)
    return seg


def source_slice_order(datasets: Sequence[pydicom.Dataset]) -> npt.NDArray[np.intp]:
    """Indices of ``datasets`` sorted as :func:`control.imaging.volumes.series_volume`
    sorts slices: by ImagePositionPatient projected on the normal of the first instance's
    ImageOrientationPatient (row x column direction cosines), ties kept in input order."""
    orientation = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
    row = orientation[:3] / np.linalg.norm(orientation[:3])
    column = orientation[3:] / np.linalg.norm(orientation[3:])
    normal = np.cross(row, column)
    distances = np.array(
        [float(np.asarray([float(v) for v in ds.ImagePositionPatient]) @ normal) for ds in datasets]
    )
    order: npt.NDArray[np.intp] = np.argsort(distances, kind="stable")
    return order


def _fix_dimension_organization_uid(seg: pydicom.Dataset, sop_uid: str) -> None:
    """Replace highdicom's random DimensionOrganizationUID with one derived from the SEG's
    SOP Instance UID, so the same content gives the same bytes."""
    uid = generate_uid(entropy_srcs=["medvision-dimension-organization", sop_uid])
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = uid
    for item in seg.get("DimensionIndexSequence", []):
        item.DimensionOrganizationUID = uid


def _frames_in_source_order(
    labels: npt.NDArray[np.generic], sources: Sequence[pydicom.Dataset]
) -> npt.NDArray[np.uint8]:
    """``(instances, Rows, Columns)`` label frames, frame ``n`` on ``sources[n]``."""
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    expected = (columns, rows, len(sources))
    if labels.shape != expected:
        raise ValueError(
            f"labels have shape {labels.shape}; the source series needs {expected} "
            "(columns, rows, slices)"
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > len(codes.BRATS_SEGMENTS)):
        raise ValueError("labels must hold 0 (background) or a BraTS label 1..3")
    frames = np.empty((len(sources), rows, columns), dtype=np.uint8)
    for k, index in enumerate(source_slice_order(sources)):
        frames[index] = labels[:, :, k].T
    return frames
