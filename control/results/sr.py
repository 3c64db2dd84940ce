"""DICOM Structured Reports (TID 1500 Measurement Report) of signed-off findings.

:func:`build_cxr_sr` and :func:`build_ct_head_sr` turn a classification report (per label: the AI
probability, the AI's call, the radiologist's decision and reason, the presence after review)
into a Comprehensive 3D SR;
:func:`build_brats_sr` reports the three brain tumour region volumes of a BraTS result and
references the segments of its SEG (:func:`control.results.seg.build_brats_seg`).

Both are pure: the objects carry MedVision's stored (pseudonymous) patient and study
identifiers copied verbatim from the source images, every UID comes from the input, and every
date and time comes from ``verifier.verified_at`` (the same content gives the same object,
byte for byte). Why highdicom: it builds the TID 1500 tree, the evidence sequences and the
SOP Common/General Series modules the standard requires, and reads them back for tests.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from control.results import codes
from control.results.content import (
    Algorithm,
    BratsResult,
    ClassificationReport,
    LabelReading,
    Verifier,
)

__all__ = [
    "MANUFACTURER",
    "algorithm_identification",
    "algorithm_parameters",
    "build_brats_sr",
    "build_ct_head_sr",
    "build_cxr_sr",
    "evidence_header",
    "person_name",
    "quiet_person_name_warnings",
    "stamp_times",
]

MANUFACTURER = "MedVision"
_SR_SERIES_NUMBER = 9001
_LO_MAX = 64
#: Type 2 attributes of the Patient and General Study modules that highdicom reads from the
#: first source image; a stored instance may lack them (de-identification empties or drops
#: them), so the builders give them empty values on a header copy.
_TYPE2_HEADER = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class _Vocabulary:
    """What differs between the classification SRs of two models."""

    findings: Mapping[str, Code]
    procedure: Code
    subject: str  # "chest X-ray", "head CT"


_CXR = _Vocabulary(codes.CXR_FINDINGS, codes.CHEST_XRAY_PROCEDURE, "chest X-ray")
_CT_HEAD = _Vocabulary(codes.CT_HEAD_FINDINGS, codes.HEAD_CT_PROCEDURE, "head CT")


def build_cxr_sr(report: ClassificationReport) -> pydicom.Dataset:
    """A Comprehensive 3D SR (TID 1500) of a chest X-ray finding after review.

    Promises: one measurement group (TID 1501) per reading, in the order given, with the
    finding coded (:data:`control.results.codes.CXR_FINDINGS`), the AI probability as a
    NUM (DCM "Probability", UCUM "1"), the AI's call and the presence after review as
    present/absent codes, the radiologist's decision as a ``99MEDVISION`` code and the
    reason as a TEXT item; the algorithm (TID 4019, with the training run and "synthetic
    training data" where so) in every group and as the device observer; the sign-off note
    as a TEXT item; the source images in each group, in the image library (when they carry
    PatientOrientation and ImagerPixelSpacing, which TID 1601 needs) and in
    CurrentRequestedProcedureEvidenceSequence. VerificationFlag VERIFIED with the
    verifier (name, organization, verified_at) and PreliminaryFlag FINAL, or UNVERIFIED and
    PRELIMINARY when ``report.preliminary``; CompletionFlag COMPLETE.

    ``source_images`` need the header only (no PixelData): SOP Class/Instance, Study/Series
    Instance UIDs, Rows and Columns; patient and study attributes are copied from the first.
    Raises ``ValueError`` for an unknown label or decision, no readings or source images, or
    a verified report without a verifier. ContentDate/Time come from ``verified_at``; a
    preliminary report without a verifier takes them from the first source image's
    ContentDate/ContentTime (else StudyDate/StudyTime), never from the clock.
    """
    return _classification_sr(report, _CXR)


def build_ct_head_sr(report: ClassificationReport) -> pydicom.Dataset:
    """The SR of :func:`build_cxr_sr` for a head CT haemorrhage finding: the six RSNA labels
    (:data:`control.results.codes.CT_HEAD_FINDINGS`), procedure "Head CT", and every slice
    the model read as a source image of each group."""
    return _classification_sr(report, _CT_HEAD)


def _classification_sr(report: ClassificationReport, vocabulary: _Vocabulary) -> pydicom.Dataset:
    if not report.readings:
        raise ValueError(f"a {vocabulary.subject} report needs at least one label reading")
    if not report.preliminary and report.verifier is None:
        raise ValueError("a signed-off report needs its verifier")
    for reading in report.readings:
        _check_reading(reading, vocabulary)
    evidence = [evidence_header(ds) for ds in _require_sources(report.source_images)]
    algorithm_id = algorithm_identification(report.algorithm)
    verifier = None if report.preliminary else report.verifier
    groups = [
        _label_group(reading, vocabulary, algorithm_id, evidence, report.sop_instance_uid)
        for reading in report.readings
    ]
    content = hd.sr.MeasurementReport(
        observation_context=_observation_context(report.algorithm, verifier),
        procedure_reported=vocabulary.procedure,
        imaging_measurements=groups,
        title=dicom_codes.DCM.ImagingMeasurementReport,
        referenced_images=evidence if all(map(_library_describable, evidence)) else None,
    )
    _append_comments(content, report.algorithm, report.note)
    created = report.verifier.verified_at if report.verifier else _image_time(evidence[0])
    return _sr_document(
        evidence=evidence,
        content=content,
        series_uid=report.series_instance_uid,
        sop_uid=report.sop_instance_uid,
        description=_description(f"AI {vocabulary.subject} findings", report.algorithm, verifier),
        verifier=verifier,
        created=created,
    )


def build_brats_sr(result: BratsResult, seg: pydicom.Dataset) -> pydicom.Dataset:
    """A Comprehensive 3D SR (TID 1500) of the brain tumour region volumes of ``result``.

    Promises: one volumetric measurement group (TID 1411) per region of
    :data:`control.results.codes.REGION_VOLUMES` (enhancing tumour, tumour core, whole
    tumour), each with the volume in ml (SCT "Volume", UCUM "ml") from ``result.region_ml``,
    the segments of ``seg`` the region is made of (Referenced Segment items: the SEG's
    SOP Class/Instance and segment number) and the source FLAIR series (Source series for
    segmentation); the algorithm (TID 4019) in every group and as the device observer; the
    mask source ("ai" or "edited") and the sign-off note as TEXT items. The SEG and the
    FLAIR instances are listed in CurrentRequestedProcedureEvidenceSequence. VERIFIED by
    ``result.verifier``, FINAL, COMPLETE; dates and times from ``verified_at``.

    ``seg`` is the object :func:`control.results.seg.build_brats_seg` made from the same
    result. Raises ``ValueError`` when a region volume is missing or negative.
    """
    missing = [key for key, _, _ in codes.REGION_VOLUMES if key not in result.region_ml]
    if missing:
        raise ValueError(f"region volumes missing: {', '.join(missing)}")
    evidence = [evidence_header(ds) for ds in _require_sources(result.source_images)]
    seg_header = evidence_header(seg)
    algorithm_id = algorithm_identification(result.algorithm)
    groups = []
    for key, label, segment_numbers in codes.REGION_VOLUMES:
        volume_ml = float(result.region_ml[key])
        if not volume_ml >= 0.0:
            raise ValueError(f"region volume {key} must be a non-negative number")
        groups.append(
            _brats_group(
                key=key,
                label=label,
                volume_ml=volume_ml,
                segment_numbers=segment_numbers,
                seg=seg_header,
                source_series_uid=str(evidence[0].SeriesInstanceUID),
                algorithm_id=algorithm_id,
                sop_uid=result.sr_sop_uid,
            )
        )
    content = hd.sr.MeasurementReport(
        observation_context=_observation_context(result.algorithm, result.verifier),
        procedure_reported=codes.MR_BRAIN_PROCEDURE,
        imaging_measurements=groups,
        title=dicom_codes.DCM.ImagingMeasurementReport,
    )
    mask = "edited by the radiologist" if result.mask_source == "edited" else "as the AI made it"
    _append_comments(content, result.algorithm, result.note, f"Segmentation mask: {mask}")
    return _sr_document(
        evidence=[*evidence, seg_header],
        content=content,
        series_uid=result.sr_series_uid,
        sop_uid=result.sr_sop_uid,
        description=_description("AI brain tumour volumes", result.algorithm, result.verifier),
        verifier=result.verifier,
        created=result.verifier.verified_at,
    )


def algorithm_identification(algorithm: Algorithm) -> hd.sr.AlgorithmIdentification:
    """TID 4019 for ``algorithm``: name, version, family "Artificial Intelligence" and the
    parameters of :func:`algorithm_parameters`."""
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name,
        version=algorithm.version,
        parameters=algorithm_parameters(algorithm),
        family=codes.ALGORITHM_FAMILY,
        manufacturer=MANUFACTURER,
    )


def algorithm_parameters(algorithm: Algorithm) -> list[str]:
    """``["training run: <MLflow run id>", "synthetic training data"]``, each where it
    applies (an empty list when neither does)."""
    parameters = []
    if algorithm.training_run:
        parameters.append(f"training run: {algorithm.training_run}")
    if algorithm.synthetic:
        parameters.append("synthetic training data")
    return parameters


def evidence_header(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A deep copy of ``ds`` without its bulk pixel data (nothing of the built object is
    shared with the caller's datasets), with the Type 2 Patient and Study
    attributes highdicom copies into a new object present (empty where ``ds`` lacks them).

    The identifying values themselves are copied verbatim; the sending code re-identifies
    the built object afterwards.
    """
    header = pydicom.Dataset()
    for element in ds:
        if element.keyword not in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            header.add(copy.deepcopy(element))
    for keyword in _TYPE2_HEADER:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def person_name(name: str) -> str:
    """``name`` as a DICOM PN: kept when it already has components (``^``), else the whole
    display name as the family-name component (``"Jane Doe^"``), at most 64 characters."""
    cleaned = name.replace("\\", " ").replace("=", " ").strip()
    if "^" not in cleaned:
        cleaned = f"{cleaned[: _LO_MAX - 1]}^"
    return cleaned[:_LO_MAX]


@contextmanager
def quiet_person_name_warnings() -> Iterator[None]:
    """Silence highdicom's "unlikely to represent the intended person name" warnings while
    building: they quote the name (a pseudonym here, copied verbatim), and names must stay
    out of logs."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=".*unlikely to represent the intended person name",
            category=UserWarning,
        )
        yield


def stamp_times(ds: pydicom.Dataset, at: datetime) -> None:
    """Replace every date and time highdicom takes from the clock with ``at`` in UTC:
    InstanceCreation, Content and Series Date/Time (DA/TM, UTC), VerificationDateTime and
    highdicom's ContributionDateTime (DT with an explicit ``+0000``).

    TimezoneOffsetFromUTC is not set: it would apply to every date and time of the object,
    including the study date and time the sending code restores in the PACS's local time.
    """
    utc = _utc(at)
    date, time = utc.strftime("%Y%m%d"), utc.strftime("%H%M%S")
    stamp = utc.strftime("%Y%m%d%H%M%S+0000")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    for observer in ds.get("VerifyingObserverSequence", []):
        observer.VerificationDateTime = stamp
    for equipment in ds.get("ContributingEquipmentSequence", []):
        if equipment.get("ManufacturerModelName") == "highdicom":
            equipment.ContributionDateTime = stamp


def _label_group(
    reading: LabelReading,
    vocabulary: _Vocabulary,
    algorithm_id: hd.sr.AlgorithmIdentification,
    evidence: Sequence[pydicom.Dataset],
    sop_uid: str,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    probability = hd.sr.Measurement(
        name=codes.PROBABILITY,
        value=round(float(reading.probability), 6),
        unit=codes.PROBABILITY_UNIT,
    )
    evaluations = [
        hd.sr.QualitativeEvaluation(codes.AI_RESULT, codes.PRESENT_ABSENT[reading.ai_positive]),
        hd.sr.QualitativeEvaluation(codes.PRESENCE, codes.PRESENT_ABSENT[reading.final_positive]),
        hd.sr.QualitativeEvaluation(codes.RADIOLOGIST_DECISION, codes.DECISIONS[reading.decision]),
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(sop_uid, reading.label, reading.label),
        finding_type=vocabulary.findings[reading.label],
        algorithm_id=algorithm_id,
        measurements=[probability],
        qualitative_evaluations=evaluations,
        source_images=[
            hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in evidence
        ],
    )
    if reading.reason:
        group[0].ContentSequence.append(_text(codes.REASON, reading.reason))
    return group


def _brats_group(
    *,
    key: str,
    label: str,
    volume_ml: float,
    segment_numbers: Iterable[int],
    seg: pydicom.Dataset,
    source_series_uid: str,
    algorithm_id: hd.sr.AlgorithmIdentification,
    sop_uid: str,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    numbers = list(segment_numbers)
    referenced = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=numbers[0],
        source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid),
    )
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(sop_uid, key, label),
        referenced_segment=referenced,
        finding_type=dicom_codes.SCT.Neoplasm,
        algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(codes.BRAIN)],
        measurements=[
            hd.sr.Measurement(
                name=codes.VOLUME,
                value=round(volume_ml, 3),
                unit=codes.VOLUME_UNIT,
            )
        ],
    )
    if len(numbers) > 1:
        # A composite region is the union of several segments: the Image SOP Instance
        # Reference Macro lets ReferencedSegmentNumber list them all (VM 1-n).
        for item in group[0].ContentSequence:
            if item.ValueType == "IMAGE" and "ReferencedSOPSequence" in item:
                item.ReferencedSOPSequence[0].ReferencedSegmentNumber = numbers
    return group


def _observation_context(
    algorithm: Algorithm, verifier: Verifier | None
) -> hd.sr.ObservationContext:
    """The device observer is the algorithm; the person observer the verifying radiologist."""
    device = hd.sr.ObserverContext(
        observer_type=dicom_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_device_uid(algorithm),
            name=algorithm.name,
            manufacturer_name=MANUFACTURER,
            model_name=f"{algorithm.name} {algorithm.version}"[:_LO_MAX],
        ),
    )
    person = None
    if verifier is not None:
        person = hd.sr.ObserverContext(
            observer_type=dicom_codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=person_name(verifier.name),
                organization_name=verifier.organization[:_LO_MAX],
            ),
        )
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _append_comments(
    content: hd.sr.MeasurementReport, algorithm: Algorithm, note: str | None, *extra: str
) -> None:
    """TEXT items at the end of the report: training data, ``extra`` and the sign-off note."""
    root = content[0].ContentSequence
    training = "synthetic training data" if algorithm.synthetic else "clinical training data"
    root.append(_text(codes.TRAINING_DATA, training))
    for text in extra:
        root.append(_text(dicom_codes.DCM.Comment, text))
    if note:
        root.append(_text(codes.REPORT_NOTE, note))


def _sr_document(
    *,
    evidence: Sequence[pydicom.Dataset],
    content: hd.sr.MeasurementReport,
    series_uid: str,
    sop_uid: str,
    description: str,
    verifier: Verifier | None,
    created: datetime,
) -> hd.sr.Comprehensive3DSR:
    utc = _utc(created)
    with quiet_person_name_warnings():
        document = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=content,
            series_instance_uid=series_uid,
            series_number=_SR_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=verifier is not None,
            is_verified=verifier is not None,
            verifying_observer_name=person_name(verifier.name) if verifier else None,
            verifying_organization=verifier.organization[:_LO_MAX] if verifier else None,
            series_description=description,
            content_date=utc.date(),
            content_time=utc.time().replace(microsecond=0),
            coding_schemes=[codes.medvision_coding_scheme()],
        )
    stamp_times(document, utc)
    return document


def _description(what: str, algorithm: Algorithm, verifier: Verifier | None) -> str:
    state = "verified" if verifier is not None else "preliminary"
    synthetic = ", synthetic training data" if algorithm.synthetic else ""
    return f"{what} ({state}{synthetic})"[:_LO_MAX]


def _tracking(sop_uid: str, key: str, label: str) -> hd.sr.TrackingIdentifier:
    """A tracking identifier whose UID derives from the document's SOP Instance UID."""
    return hd.sr.TrackingIdentifier(
        uid=generate_uid(entropy_srcs=["medvision-tracking", sop_uid, key]),
        identifier=label,
    )


def _device_uid(algorithm: Algorithm) -> str:
    """The same Device Observer UID for the same model name and version."""
    return str(
        generate_uid(entropy_srcs=["medvision-algorithm", algorithm.name, algorithm.version])
    )


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _check_reading(reading: LabelReading, vocabulary: _Vocabulary) -> None:
    if reading.label not in vocabulary.findings:
        raise ValueError(f"unknown {vocabulary.subject} label {reading.label!r}")
    if reading.decision not in codes.DECISIONS:
        raise ValueError(f"unknown decision {reading.decision!r} for {reading.label}")
    if not 0.0 <= float(reading.probability) <= 1.0:
        raise ValueError(f"probability of {reading.label} must lie in [0, 1]")


def _library_describable(ds: pydicom.Dataset) -> bool:
    """Whether highdicom can describe ``ds`` in the image library (TID 1601): projection
    radiographs need PatientOrientation and ImagerPixelSpacing, which a CR may lack."""
    return all(keyword in ds for keyword in ("PatientOrientation", "ImagerPixelSpacing"))


def _require_sources(source_images: Sequence[pydicom.Dataset]) -> Sequence[pydicom.Dataset]:
    if not source_images:
        raise ValueError("a result object needs the source images it is about")
    return source_images


def _image_time(ds: pydicom.Dataset) -> datetime:
    """The image's ContentDate/Time (else StudyDate/Time) as a UTC datetime; 1900-01-01
    when the image carries no date."""
    for date_keyword, time_keyword in (("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
        date = str(ds.get(date_keyword) or "")
        if len(date) == 8 and date.isdigit():
            time = "".join(
                ch for ch in str(ds.get(time_keyword) or "").split(".")[0] if ch.isdigit()
            )
            return datetime.strptime(date + (time + "000000")[:6], "%Y%m%d%H%M%S").replace(
                tzinfo=UTC
            )
    return datetime(1900, 1, 1, tzinfo=UTC)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("verified_at must be timezone-aware")
    return at.astimezone(UTC)
