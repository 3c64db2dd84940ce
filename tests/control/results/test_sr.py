"""The TID 1500 Structured Reports: chest X-ray findings after review, BraTS region volumes."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.uid import Comprehensive3DSRStorage

from control.results import codes
from control.results.content import BratsResult, ClassificationReport, LabelReading
from control.results.seg import build_brats_seg
from control.results.sr import build_brats_sr, build_ct_head_sr, build_cxr_sr, person_name
from tests.control.results import (
    STUDY_UID,
    VERIFIER,
    algorithm,
    brats_result,
    cxr_report,
    dciodvfy_lines,
    dsrdump,
    dx_instance,
    encoded,
    flair_series,
    readings,
    stored_instance,
    write,
)
from tests.fixtures.ct import ct_slice

#: (case, report overrides): the chest X-ray reports every SR check runs on.
CXR_CASES = [
    ("verified", {}),
    ("preliminary", {"preliminary": True, "verifier": None, "note": None}),
    ("not_synthetic_no_run", {"algorithm": algorithm(synthetic=False, run=None)}),
    ("cr_without_library_attributes", {"source_images": [dx_instance(library_attributes=False)]}),
    ("two_views", {"source_images": [dx_instance(seed=1), dx_instance(seed=2)]}),
]
CXR_IDS = [case for case, _ in CXR_CASES]


def _read(ds: pydicom.Dataset, tmp_path: Path, name: str = "sr.dcm") -> hd.sr.Comprehensive3DSR:
    return hd.sr.srread(write(ds, tmp_path / name))


def _items(dataset: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every content item of an SR tree, depth first."""
    out = []
    for item in dataset.get("ContentSequence", []):
        out.append(item)
        out.extend(_items(item))
    return out


def _texts(dataset: pydicom.Dataset, meaning: str) -> list[str]:
    return [
        item.TextValue
        for item in _items(dataset)
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]


def _code(value: hd.sr.CodedConcept) -> tuple[str, str]:
    return value.value, value.scheme_designator


@pytest.mark.parametrize(("case", "overrides"), CXR_CASES, ids=CXR_IDS)
def test_cxr_groups_carry_each_reading(case: str, overrides: dict, tmp_path: Path) -> None:
    report = cxr_report(**overrides)

    sr = _read(build_cxr_sr(report), tmp_path)

    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == len(report.readings)
    for group, reading in zip(groups, report.readings, strict=True):
        assert group.tracking_identifier == reading.label
        assert _code(group.finding_type) == _code(codes.CXR_FINDINGS[reading.label])
        (probability,) = group.get_measurements(name=codes.PROBABILITY)
        assert probability.value == pytest.approx(reading.probability)
        assert _code(probability.unit) == ("1", "UCUM")
        evaluations = {
            evaluation.name.value: evaluation.value.value
            for evaluation in group.get_qualitative_evaluations()
        }
        assert evaluations[codes.AI_RESULT.value] == codes.PRESENT_ABSENT[reading.ai_positive].value
        assert (
            evaluations[codes.PRESENCE.value] == codes.PRESENT_ABSENT[reading.final_positive].value
        )
        assert (
            evaluations[codes.RADIOLOGIST_DECISION.value] == codes.DECISIONS[reading.decision].value
        )
        assert _texts(group[0], "Comment") == ([reading.reason] if reading.reason else [])
        assert {image.referenced_sop_instance_uid for image in group.source_images} == {
            ds.SOPInstanceUID for ds in report.source_images
        }
        names = _texts(group[0], "Algorithm Name")
        assert names == [report.algorithm.name], case


@pytest.mark.parametrize(("case", "overrides"), CXR_CASES, ids=CXR_IDS)
def test_cxr_algorithm_identification(case: str, overrides: dict, tmp_path: Path) -> None:
    report = cxr_report(**overrides)

    sr = _read(build_cxr_sr(report), tmp_path)

    parameters = set(_texts(sr, "Algorithm Parameters"))
    assert set(_texts(sr, "Algorithm Version")) == {report.algorithm.version}
    if report.algorithm.training_run:
        assert f"training run: {report.algorithm.training_run}" in parameters
    training = _texts(sr, "Training data")
    if report.algorithm.synthetic:
        assert "synthetic training data" in parameters
        assert training == ["synthetic training data"]
        assert "synthetic training data" in sr.SeriesDescription
    else:
        assert parameters == set()
        assert training == ["clinical training data"]
    (device,) = sr.content.get_observer_contexts(observer_type=dicom_codes.DCM.Device)
    assert device.observer_identifying_attributes.name == report.algorithm.name


@pytest.mark.parametrize(("case", "overrides"), CXR_CASES, ids=CXR_IDS)
def test_cxr_verification_and_references(case: str, overrides: dict, tmp_path: Path) -> None:
    report = cxr_report(**overrides)

    sr = _read(build_cxr_sr(report), tmp_path)

    assert sr.SOPClassUID == Comprehensive3DSRStorage
    assert sr.CompletionFlag == "COMPLETE"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    first = report.source_images[0]
    assert (sr.PatientID, str(sr.PatientName)) == (first.PatientID, str(first.PatientName))
    assert sr.StudyInstanceUID == first.StudyInstanceUID
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == (
        report.series_instance_uid,
        report.sop_instance_uid,
    )
    evidence = {(series, sop) for _, series, sop, _ in sr.get_evidence()}
    assert evidence == {(ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in report.source_images}
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99MEDVISION"
    persons = sr.content.get_observer_contexts(observer_type=dicom_codes.DCM.Person)
    if report.preliminary:
        assert (sr.VerificationFlag, sr.PreliminaryFlag) == ("UNVERIFIED", "PRELIMINARY")
        assert "VerifyingObserverSequence" not in sr
        assert persons == []
        assert _texts(sr, "Comment") == [r.reason for r in report.readings if r.reason]
    else:
        assert (sr.VerificationFlag, sr.PreliminaryFlag) == ("VERIFIED", "FINAL")
        observer = sr.VerifyingObserverSequence[0]
        assert str(observer.VerifyingObserverName) == "Jane Radiologist^"
        assert observer.VerifyingOrganization == VERIFIER.organization
        assert observer.VerificationDateTime == "20260304101112+0000"
        assert (sr.ContentDate, sr.ContentTime) == ("20260304", "101112")
        assert (sr.InstanceCreationDate, sr.InstanceCreationTime) == ("20260304", "101112")
        assert "TimezoneOffsetFromUTC" not in sr
        assert len(persons) == 1
        assert report.note in _texts(sr, "Comment")


def test_cxr_image_library_lists_dx_sources(tmp_path: Path) -> None:
    report = cxr_report()

    sr = _read(build_cxr_sr(report), tmp_path)

    library = [
        item
        for item in _items(sr)
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Image Library"
    ]
    assert len(library) == 1


@pytest.mark.parametrize(("case", "overrides"), CXR_CASES, ids=CXR_IDS)
def test_cxr_same_content_gives_the_same_bytes(case: str, overrides: dict) -> None:
    report = cxr_report(**overrides)
    assert encoded(build_cxr_sr(report)) == encoded(build_cxr_sr(report))


def test_cxr_leaves_its_inputs_alone_and_shares_nothing_with_them() -> None:
    source = dx_instance()
    before = encoded(source)

    sr = build_cxr_sr(cxr_report(source_images=[source]))
    sr.DeidentificationMethodCodeSequence[0].CodeValue = "changed"

    assert encoded(source) == before


def test_cxr_preliminary_time_comes_from_the_image() -> None:
    source = dx_instance()
    source.ContentDate, source.ContentTime = "20250102", "030405.123"
    report = cxr_report(source_images=[source], preliminary=True, verifier=None)

    sr = build_cxr_sr(report)

    assert (sr.ContentDate, sr.ContentTime) == ("20250102", "030405")


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("no_readings", {"readings": []}),
        ("no_sources", {"source_images": []}),
        ("verified_without_verifier", {"verifier": None}),
        (
            "unknown_label",
            {"readings": [LabelReading("Fracture", 0.5, True, True, "accepted", None)]},
        ),
        (
            "unknown_decision",
            {"readings": [LabelReading("Mass", 0.5, True, True, "maybe", None)]},
        ),
        (
            "probability_out_of_range",
            {"readings": [LabelReading("Mass", 1.5, True, True, "accepted", None)]},
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_cxr_rejects_bad_content(case: str, overrides: dict) -> None:
    with pytest.raises(ValueError):
        build_cxr_sr(cxr_report(**overrides))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Jane Radiologist", "Jane Radiologist^"),
        ("Doe^Jane", "Doe^Jane"),
        ("a=b\\c", "a b c^"),
        ("x" * 80, "x" * 63 + "^"),
    ],
)
def test_person_name(name: str, expected: str) -> None:
    assert person_name(name) == expected


@pytest.mark.parametrize(("case", "overrides"), CXR_CASES, ids=CXR_IDS)
def test_cxr_dsrdump_and_dciodvfy(case: str, overrides: dict, tmp_path: Path) -> None:
    path = write(build_cxr_sr(cxr_report(**overrides)), tmp_path / f"{case}.dcm")

    dump = dsrdump(path)
    lines = dciodvfy_lines(path)

    assert dump.returncode == 0, dump.stderr
    assert "error" not in (dump.stdout + dump.stderr).lower()
    assert [line for line in lines if line.startswith("Error")] == []


# --- BraTS region volumes ---


def _brats_pair(**overrides: object) -> tuple[BratsResult, pydicom.Dataset]:
    result = brats_result(flair_series(), **overrides)
    return result, build_brats_seg(result)


def test_brats_volumes_reference_the_seg(tmp_path: Path) -> None:
    result, seg = _brats_pair()

    sr = _read(build_brats_sr(result, seg), tmp_path)

    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [group.tracking_identifier for group in groups] == [
        label for _, label, _ in codes.REGION_VOLUMES
    ]
    for group, (key, _, segments) in zip(groups, codes.REGION_VOLUMES, strict=True):
        (volume,) = group.get_measurements(name=codes.VOLUME)
        assert volume.value == pytest.approx(result.region_ml[key])
        assert _code(volume.unit) == ("ml", "UCUM")
        (image,) = [item for item in group[0].ContentSequence if item.ValueType == "IMAGE"]
        reference = image.ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert reference.ReferencedSOPClassUID == seg.SOPClassUID
        numbers = reference["ReferencedSegmentNumber"]
        assert [int(n) for n in (numbers.value if numbers.VM > 1 else [numbers.value])] == list(
            segments
        )
        (source_series,) = [
            item.UID
            for item in _items(group[0])
            if item.ValueType == "UIDREF"
            and item.ConceptNameCodeSequence[0].CodeMeaning == "Source Series for Segmentation"
        ]
        assert source_series == result.source_images[0].SeriesInstanceUID


def test_brats_sr_evidence_and_verification(tmp_path: Path) -> None:
    result, seg = _brats_pair(mask_source="edited")

    sr = _read(build_brats_sr(result, seg), tmp_path)

    evidence = {sop for _, _, sop, _ in sr.get_evidence()}
    assert evidence == {seg.SOPInstanceUID} | {ds.SOPInstanceUID for ds in result.source_images}
    assert (sr.VerificationFlag, sr.CompletionFlag, sr.PreliminaryFlag) == (
        "VERIFIED",
        "COMPLETE",
        "FINAL",
    )
    assert sr.VerifyingObserverSequence[0].VerificationDateTime == "20260304101112+0000"
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == (result.sr_series_uid, result.sr_sop_uid)
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == result.source_images[0].StudyInstanceUID
    comments = _texts(sr, "Comment")
    assert "Segmentation mask: edited by the radiologist" in comments
    assert result.note in comments
    assert _texts(sr, "Training data") == ["synthetic training data"]


def test_brats_sr_same_content_gives_the_same_bytes() -> None:
    result, seg = _brats_pair()
    assert encoded(build_brats_sr(result, seg)) == encoded(build_brats_sr(result, seg))


@pytest.mark.parametrize(
    "region_ml",
    [
        {"enhancing_tumour": 1.0, "tumour_core": 2.0},
        {
            **dict.fromkeys(("enhancing_tumour", "tumour_core", "whole_tumour"), 1.0),
            "tumour_core": -1.0,
        },
    ],
    ids=["missing_region", "negative_volume"],
)
def test_brats_sr_rejects_bad_volumes(region_ml: dict) -> None:
    result, seg = _brats_pair()
    with pytest.raises(ValueError):
        build_brats_sr(replace(result, region_ml=region_ml), seg)


@pytest.mark.parametrize("mask_source", ["ai", "edited"])
def test_brats_sr_dsrdump_and_dciodvfy(mask_source: str, tmp_path: Path) -> None:
    result, seg = _brats_pair(mask_source=mask_source)
    path = write(build_brats_sr(result, seg), tmp_path / "brats-sr.dcm")

    dump = dsrdump(path)
    lines = dciodvfy_lines(path)

    assert dump.returncode == 0, dump.stderr
    assert "error" not in (dump.stdout + dump.stderr).lower()
    assert [line for line in lines if line.startswith("Error")] == []


def test_readings_factory_covers_every_decision() -> None:
    assert {reading.decision for reading in readings()} == {
        "accepted",
        "rejected",
        "edited",
        "none",
    }


# --- Head CT haemorrhage (ct_head) ---


def _ct_slices(count: int = 5) -> list[pydicom.Dataset]:
    series = pydicom.uid.generate_uid()
    return [
        stored_instance(
            pydicom.dcmread(
                BytesIO(ct_slice(16, study_uid=STUDY_UID, series_uid=series, index=index))
            )
        )
        for index in range(count)
    ]


def _ct_report(**overrides: object) -> ClassificationReport:
    labels = list(codes.CT_HEAD_FINDINGS)
    values: dict[str, object] = {
        "source_images": _ct_slices(),
        "readings": [
            LabelReading(
                label=label,
                probability=0.1 + 0.15 * index,
                ai_positive=index in (0, 5),
                final_positive=index in (0, 5),
                decision="accepted",
                reason=None,
            )
            for index, label in enumerate(labels)
        ],
        "algorithm": algorithm("ct_head"),
        "verifier": VERIFIER,
        "note": "Acute subdural haematoma, left.",
        "series_instance_uid": "2.25.3000000000000000000000000000001",
        "sop_instance_uid": "2.25.3000000000000000000000000000002",
    }
    values.update(overrides)
    return ClassificationReport(**values)  # type: ignore[arg-type]


def test_ct_head_sr_codes_its_labels_and_references_every_slice(tmp_path: Path) -> None:
    report = _ct_report()
    sr = _read(build_ct_head_sr(report), tmp_path)

    assert sr.SOPClassUID == Comprehensive3DSRStorage
    [procedure] = [
        item
        for item in _items(sr)
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Procedure reported"
    ]
    assert procedure.ConceptCodeSequence[0].CodeValue == "24725-4"  # LOINC Head CT
    findings = [
        item.ConceptCodeSequence[0]
        for item in _items(sr)
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Finding"
    ]
    assert [(f.CodeValue, f.CodingSchemeDesignator) for f in findings] == [
        (code.value, code.scheme_designator) for code in codes.CT_HEAD_FINDINGS.values()
    ]
    assert findings[0].CodeValue == "1386000"  # SNOMED CT Intracranial hemorrhage
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    referenced = [item.ReferencedSOPInstanceUID for item in evidence.ReferencedSOPSequence]
    assert referenced == [ds.SOPInstanceUID for ds in report.source_images]
    assert "AI head CT findings" in sr.SeriesDescription


def test_ct_head_sr_refuses_a_chest_label() -> None:
    reading = replace(_ct_report().readings[0], label="Cardiomegaly")
    with pytest.raises(ValueError, match="unknown head CT label 'Cardiomegaly'"):
        build_ct_head_sr(_ct_report(readings=[reading]))


def test_ct_head_sr_dsrdump_and_dciodvfy(tmp_path: Path) -> None:
    path = write(build_ct_head_sr(_ct_report()), tmp_path / "ct-head.dcm")

    dump = dsrdump(path)
    lines = dciodvfy_lines(path)

    assert dump.returncode == 0, dump.stderr
    assert "error" not in (dump.stdout + dump.stderr).lower()
    assert [line for line in lines if line.startswith("Error")] == []
