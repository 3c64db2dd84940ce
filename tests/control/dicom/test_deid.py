"""De-identification: Basic Profile coverage, pseudonyms, date shifts, kept attributes, MR types."""

from __future__ import annotations

import copy
import io
import re
from datetime import date, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_has_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, CTImageStorage, ImplicitVRLittleEndian

from control.dicom.deid import (
    MAX_DATE_SHIFT_DAYS,
    DeidResult,
    SequenceRules,
    classify_mr_sequence,
    deidentify,
    pseudonymous_uid,
)
from control.dicom.profile import BASIC_PROFILE, Action, choose_action
from tests.fixtures.phi import PHI_MARKERS, make_phi_dataset, write_phi_file

KEY = b"medvision-test-key-0123456789abcdef"
OTHER_KEY = b"another-deployment-key-fedcba9876543210"
SAMPLE_FILES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")
PSEUDONYM_UID = re.compile(rb"2\.25\.\d+")

KEPT_KEYWORDS = (
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PlanarConfiguration",
    "NumberOfFrames",
    "PixelData",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "PatientOrientation",
    "SOPClassUID",
    "EchoTime",
    "RepetitionTime",
    "InversionTime",
    "ScanningSequence",
    "SequenceVariant",
    "MagneticFieldStrength",
    "BurnedInAnnotation",
)

KEY_PROFILE_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientComments",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "AcquisitionDateTime",
    "AccessionNumber",
    "StudyID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "StationName",
    "DeviceSerialNumber",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ImageComments",
    "RequestAttributesSequence",
    "ReferencedPatientSequence",
    "ReferencedStudySequence",
    "ReferencedImageSequence",
    "SourceImageSequence",
    "IconImageSequence",
)


def _sample(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return pydicom.dcmread(path)


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _parse(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def _mr(**attributes: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture(scope="module")
def phi_result() -> DeidResult:
    return deidentify(make_phi_dataset(), KEY)


# --- Basic Profile coverage -------------------------------------------------------------------


def test_profile_table_covers_key_identifying_attributes() -> None:
    missing = [kw for kw in KEY_PROFILE_KEYWORDS if Tag(kw) not in BASIC_PROFILE]
    assert missing == []
    assert len(BASIC_PROFILE) > 500


def test_profile_never_touches_the_attributes_processing_needs() -> None:
    for keyword in KEPT_KEYWORDS:
        tag = Tag(keyword)
        assert tag not in BASIC_PROFILE, keyword


@pytest.mark.parametrize(
    ("keyword", "vr", "action"),
    [
        ("PatientName", "PN", Action.EMPTY),
        ("PatientBirthDate", "DA", Action.EMPTY),
        ("StudyDate", "DA", Action.SHIFT_DATE),
        ("SeriesDate", "DA", Action.SHIFT_DATE),
        ("AdmittingDate", "DA", Action.REMOVE),
        ("StudyTime", "TM", Action.EMPTY),
        ("SeriesTime", "TM", Action.REMOVE),
        ("InstitutionName", "LO", Action.EMPTY),
        ("ProtocolName", "LO", Action.REMOVE),
        ("SeriesDescription", "LO", Action.REMOVE),
        ("PersonName", "PN", Action.DUMMY),
        ("SOPInstanceUID", "UI", Action.REPLACE_UID),
        ("SOPClassUID", "UI", Action.KEEP),
        ("ReferencedSOPClassUID", "UI", Action.KEEP),
        ("ReferencedImageSequence", "SQ", Action.CLEAN_SEQUENCE),
        ("ProcedureCodeSequence", "SQ", Action.CLEAN_SEQUENCE),
        ("OtherPatientIDsSequence", "SQ", Action.REMOVE),
        ("ContentSequence", "SQ", Action.EMPTY),
        ("Rows", "US", Action.KEEP),
    ],
)
def test_choose_action(keyword: str, vr: str, action: Action) -> None:
    assert choose_action(Tag(keyword), vr) is action


def test_fixture_carries_every_marker_and_every_known_profile_attribute() -> None:
    ds = make_phi_dataset()
    encoded = _encode(ds)
    assert len(PHI_MARKERS) == len(set(PHI_MARKERS)) > 500
    assert [marker for marker in PHI_MARKERS if marker not in encoded] == []
    known = [tag for tag in BASIC_PROFILE if tag.group >= 0x0008 and dictionary_has_tag(tag)]
    assert [tag for tag in known if tag not in ds] == []


def test_no_phi_marker_survives(phi_result: DeidResult) -> None:
    encoded = _encode(phi_result.dataset)
    # Pseudonymous UIDs are long random decimals; drop them so a chance digit run inside one
    # is not mistaken for a marker date.
    scanned = PSEUDONYM_UID.sub(b"", encoded)
    assert [marker for marker in PHI_MARKERS if marker in scanned] == []


def test_written_phi_file_de_identifies_clean(tmp_path: Path) -> None:
    path = write_phi_file(tmp_path / "phi.dcm")
    result = deidentify(pydicom.dcmread(path), KEY)
    scanned = PSEUDONYM_UID.sub(b"", _encode(result.dataset))
    assert [marker for marker in PHI_MARKERS if marker in scanned] == []


def test_private_tags_removed_at_every_depth(phi_result: DeidResult) -> None:
    original = make_phi_dataset()
    nested_private = [
        elem.tag
        for seq in original.iterall()
        if seq.VR == "SQ"
        for item in seq.value
        for elem in item
        if elem.tag.is_private
    ]
    assert nested_private, "fixture must carry private tags inside sequences"
    assert [elem.tag for elem in phi_result.dataset.iterall() if elem.tag.is_private] == []


def test_overlay_and_curve_groups_removed(phi_result: DeidResult) -> None:
    groups = {elem.tag.group & 0xFF00 for elem in phi_result.dataset}
    assert 0x6000 not in groups
    assert 0x5000 not in groups


def test_type_1_and_2_attributes_stay_present(phi_result: DeidResult) -> None:
    ds = phi_result.dataset
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    ):
        assert keyword in ds, keyword
    for keyword in ("PatientBirthDate", "PatientSex", "StudyTime", "AccessionNumber", "StudyID"):
        assert not ds[keyword].value, keyword


def test_free_text_and_demographics_removed(phi_result: DeidResult) -> None:
    ds = phi_result.dataset
    for keyword in (
        "SeriesDescription",
        "StudyDescription",
        "ProtocolName",
        "ImageComments",
        "PatientAge",
        "PatientWeight",
        "PatientSize",
        "PatientAddress",
        "OtherPatientIDsSequence",
        "RequestAttributesSequence",
        "ReferencedPatientSequence",
        "IssuerOfPatientID",
        "SeriesTime",
    ):
        assert keyword not in ds, keyword


def test_nested_unlisted_sequences_are_cleaned_not_dropped(phi_result: DeidResult) -> None:
    shift = timedelta(days=phi_result.date_shift_days)
    original = make_phi_dataset().ProcedureCodeSequence[0]
    cleaned = phi_result.dataset.ProcedureCodeSequence[0]
    for _depth in range(3):
        assert cleaned.PatientName == ""
        assert cleaned.InstitutionName == ""
        assert "OtherPatientIDsSequence" not in cleaned
        assert cleaned.ReferencedSOPClassUID == CTImageStorage
        assert cleaned.ReferencedSOPInstanceUID == pseudonymous_uid(
            original.ReferencedSOPInstanceUID, KEY
        )
        assert _parse(cleaned.StudyDate) - _parse(original.StudyDate) == shift
        if "ProcedureCodeSequence" in original:
            original = original.ProcedureCodeSequence[0]
            cleaned = cleaned.ProcedureCodeSequence[0]


def test_de_identification_is_recorded(phi_result: DeidResult) -> None:
    ds = phi_result.dataset
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {
        (item.CodeValue, item.CodingSchemeDesignator)
        for item in ds.DeidentificationMethodCodeSequence
    }
    assert ("113100", "DCM") in codes
    assert ("113107", "DCM") in codes


def test_preamble_and_file_meta_cleaned() -> None:
    ds = _sample("CT_small.dcm")
    ds.file_meta.SourceApplicationEntityTitle = "PACS_AE_TITLE"
    assert ds.preamble != b"\0" * 128
    out = deidentify(ds, KEY).dataset
    assert out.preamble == b"\0" * 128
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert b"PACS_AE_TITLE" not in _encode(out)


# --- UIDs -------------------------------------------------------------------------------------


def test_pseudonymous_uid_is_a_valid_deterministic_keyed_uid() -> None:
    original = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    first = pseudonymous_uid(original, KEY)
    assert first == pseudonymous_uid(original, KEY)
    assert first == pseudonymous_uid(original + "\0", KEY)
    assert first != pseudonymous_uid(original, OTHER_KEY)
    assert first != pseudonymous_uid(original + "1", KEY)
    assert re.fullmatch(r"2\.25\.(0|[1-9]\d*)", first)
    assert len(first) <= 64
    assert UID(first).is_valid


def test_uids_deterministic_across_calls_and_keyed() -> None:
    ds = _sample("CT_small.dcm")
    first = deidentify(ds, KEY).dataset
    second = deidentify(ds, KEY).dataset
    other = deidentify(ds, OTHER_KEY).dataset
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    ):
        assert (
            first[keyword].value
            == second[keyword].value
            == pseudonymous_uid(ds[keyword].value, KEY)
        )
        assert first[keyword].value != other[keyword].value
        assert first[keyword].value != ds[keyword].value


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_standard_uids_kept(name: str) -> None:
    ds = _sample(name)
    out = deidentify(ds, KEY).dataset
    assert out.SOPClassUID == ds.SOPClassUID
    assert out.file_meta.MediaStorageSOPClassUID == ds.file_meta.MediaStorageSOPClassUID
    assert out.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_references_between_instances_stay_consistent() -> None:
    first = _sample("CT_small.dcm")
    second = _sample("CT_small.dcm")
    second.SOPInstanceUID = second.SOPInstanceUID + ".2"
    reference = Dataset()
    reference.ReferencedSOPClassUID = first.SOPClassUID
    reference.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([reference])

    out_first = deidentify(first, KEY).dataset
    out_second = deidentify(second, KEY).dataset

    referenced = out_second.ReferencedImageSequence[0]
    assert referenced.ReferencedSOPInstanceUID == out_first.SOPInstanceUID
    assert referenced.ReferencedSOPClassUID == first.SOPClassUID
    assert out_second.SOPInstanceUID != out_first.SOPInstanceUID
    assert out_second.StudyInstanceUID == out_first.StudyInstanceUID
    assert out_second.FrameOfReferenceUID == out_first.FrameOfReferenceUID


# --- pixels and kept attributes ---------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_pixel_data_byte_identical_and_file_readable(name: str) -> None:
    ds = _sample(name)
    out = deidentify(ds, KEY).dataset
    assert out.PixelData == ds.PixelData
    reread = pydicom.dcmread(io.BytesIO(_encode(out)))
    assert reread.PixelData == ds.PixelData
    assert reread.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID


def test_compressed_pixel_data_is_not_decompressed() -> None:
    ds = _sample("JPEG2000.dcm")
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    out = deidentify(ds, KEY).dataset
    assert out.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert out["PixelData"].is_undefined_length
    assert out.PixelData == ds.PixelData


def _with_processing_attributes(ds: Dataset) -> Dataset:
    defaults: dict[str, object] = {
        "RescaleSlope": "1",
        "RescaleIntercept": "-1024",
        "RescaleType": "HU",
        "WindowCenter": "40",
        "WindowWidth": "400",
        "PixelSpacing": ["0.5", "0.5"],
        "ImagerPixelSpacing": ["0.14", "0.14"],
        "SliceThickness": "2.5",
        "SpacingBetweenSlices": "2.5",
        "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"],
        "ImagePositionPatient": ["-100", "-100", "50"],
        "BodyPartExamined": "CHEST",
        "ViewPosition": "PA",
        "PatientOrientation": ["L", "F"],
        "PlanarConfiguration": 0,
        "NumberOfFrames": "1",
        "EchoTime": "100",
        "RepetitionTime": "4000",
        "InversionTime": "2500",
        "ScanningSequence": ["SE", "IR"],
        "SequenceVariant": ["SK", "SP"],
        "MagneticFieldStrength": "3",
        "BurnedInAnnotation": "NO",
    }
    for keyword, value in defaults.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize("name", [*SAMPLE_FILES, "phi"])
def test_processing_attributes_unchanged(name: str) -> None:
    ds = _with_processing_attributes(make_phi_dataset() if name == "phi" else _sample(name))
    out = deidentify(ds, KEY).dataset
    for keyword in KEPT_KEYWORDS:
        assert keyword in out, keyword
        assert out[keyword].value == ds[keyword].value, keyword
        assert out[keyword].VR == ds[keyword].VR, keyword


# --- dates and identity -----------------------------------------------------------------------


def test_dates_shift_by_one_offset_within_a_patient() -> None:
    ds = _sample("CT_small.dcm")
    result = deidentify(ds, KEY)
    assert -MAX_DATE_SHIFT_DAYS <= result.date_shift_days <= -1
    shift = timedelta(days=result.date_shift_days)
    for keyword in (
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "InstanceCreationDate",
    ):
        assert _parse(result.dataset[keyword].value) - _parse(ds[keyword].value) == shift, keyword

    another_series = _sample("CT_small.dcm")
    another_series.SeriesInstanceUID += ".9"
    another_series.SeriesDate = "20040120"
    second = deidentify(another_series, KEY)
    assert second.date_shift_days == result.date_shift_days
    assert _parse(second.dataset.SeriesDate) - _parse("20040120") == shift


def test_datetime_values_shift_their_date_and_keep_their_time() -> None:
    ds = _sample("CT_small.dcm")
    ds.AcquisitionDateTime = "20040119072731.123456+0100"
    result = deidentify(ds, KEY)
    shifted = str(result.dataset.AcquisitionDateTime)
    assert shifted.endswith("072731.123456+0100")
    assert _parse(shifted) - date(2004, 1, 19) == timedelta(days=result.date_shift_days)


@pytest.mark.parametrize(
    ("value", "expected_empty"),
    [("2004.01.19", False), ("20041399", True), ("2004", True), ("garbage!", True)],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_unshiftable_dates_are_emptied(value: str, expected_empty: bool) -> None:
    ds = _sample("CT_small.dcm")
    ds.StudyDate = value
    out = deidentify(ds, KEY).dataset
    assert (out.StudyDate == "") is expected_empty
    assert value.encode() not in _encode(out)


def test_different_patients_usually_get_different_offsets() -> None:
    offsets = set()
    for index in range(10):
        ds = _sample("CT_small.dcm")
        ds.PatientID = f"PATIENT-{index}"
        offsets.add(deidentify(ds, KEY).date_shift_days)
    assert len(offsets) > 5


def test_patient_pseudonym_replaces_name_and_id() -> None:
    ds = _sample("CT_small.dcm")
    result = deidentify(ds, KEY)
    assert result.original_patient_id == "1CT1"
    assert re.fullmatch(r"ANON-[0-9A-F]{12}", result.pseudo_patient_id)
    assert result.dataset.PatientID == result.pseudo_patient_id
    assert str(result.dataset.PatientName) == result.pseudo_patient_id
    assert deidentify(_sample("CT_small.dcm"), KEY).pseudo_patient_id == result.pseudo_patient_id
    assert deidentify(ds, OTHER_KEY).pseudo_patient_id != result.pseudo_patient_id

    ds.IssuerOfPatientID = "OTHER-HOSPITAL"
    assert deidentify(ds, KEY).pseudo_patient_id != result.pseudo_patient_id


def test_missing_patient_id_does_not_merge_patients() -> None:
    first = _sample("CT_small.dcm")
    del first.PatientID
    second = copy.deepcopy(first)
    second.StudyInstanceUID += ".5"
    result = deidentify(first, KEY)
    assert result.original_patient_id == ""
    assert result.dataset.PatientID == result.pseudo_patient_id
    assert deidentify(second, KEY).pseudo_patient_id != result.pseudo_patient_id


def test_original_uids_returned(phi_result: DeidResult) -> None:
    original = make_phi_dataset()
    assert phi_result.original_study_uid == original.StudyInstanceUID
    assert phi_result.original_series_uid == original.SeriesInstanceUID
    assert phi_result.original_sop_instance_uid == original.SOPInstanceUID


@pytest.mark.parametrize(
    ("attributes", "band"),
    [
        ({"PatientAge": "045Y"}, "40-60"),
        ({"PatientAge": "006M"}, "0-20"),
        ({"PatientAge": "010W"}, "0-20"),
        ({"PatientAge": "003D"}, "0-20"),
        ({"PatientAge": "019Y"}, "0-20"),
        ({"PatientAge": "020Y"}, "20-40"),
        ({"PatientAge": "079Y"}, "60-80"),
        ({"PatientAge": "085Y"}, "80+"),
        ({"PatientAge": "240M"}, "20-40"),
        ({"PatientBirthDate": "19600615", "StudyDate": "20200614"}, "40-60"),
        ({"PatientBirthDate": "19600615", "StudyDate": "20200615"}, "60-80"),
        ({"PatientBirthDate": "19300101", "SeriesDate": "20200101"}, "80+"),
        ({"PatientBirthDate": "20300101", "StudyDate": "20200101"}, None),
        ({"PatientBirthDate": "19600615"}, None),
        ({"PatientAge": "old"}, None),
        ({}, None),
    ],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_age_band(attributes: dict[str, str], band: str | None) -> None:
    ds = Dataset()
    ds.PatientID = "AGE-TEST"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    result = deidentify(ds, KEY)
    assert result.age_band == band
    assert "PatientAge" not in result.dataset
    assert result.dataset.get("PatientBirthDate", "") == ""


@pytest.mark.parametrize(
    ("value", "sex"), [("M", "M"), ("F", "F"), ("O", "O"), ("f ", "F"), ("", None), ("X", None)]
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_sex(value: str, sex: str | None) -> None:
    ds = _sample("MR_small.dcm")
    ds.PatientSex = value
    result = deidentify(ds, KEY)
    assert result.sex == sex
    assert result.dataset.PatientSex == ""


@pytest.mark.parametrize(("value", "flag"), [("YES", True), ("NO", False), (None, False)])
def test_burned_in_annotation_flag(value: str | None, flag: bool) -> None:
    ds = _sample("CT_small.dcm")
    if value is not None:
        ds.BurnedInAnnotation = value
    result = deidentify(ds, KEY)
    assert result.burned_in_annotation is flag
    if value is not None:
        assert result.dataset.BurnedInAnnotation == value


# --- input handling ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*SAMPLE_FILES, "phi"])
def test_input_not_mutated(name: str) -> None:
    ds = make_phi_dataset() if name == "phi" else _sample(name)
    before = _encode(ds)
    preamble = ds.preamble
    snapshot = copy.deepcopy(ds)
    deidentify(ds, KEY)
    assert _encode(ds) == before
    assert ds == snapshot
    assert ds.preamble == preamble


def test_dataset_without_file_meta() -> None:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-1234567"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    result = deidentify(ds, KEY)
    assert result.dataset.SOPInstanceUID == pseudonymous_uid("1.2.3.4.5.6.7", KEY)
    assert "Doe" not in str(result.dataset)


def test_media_storage_uid_pseudonymised_without_sop_instance_uid() -> None:
    ds = _sample("CT_small.dcm")
    original = ds.file_meta.MediaStorageSOPInstanceUID
    del ds.SOPInstanceUID
    out = deidentify(ds, KEY).dataset
    assert out.file_meta.MediaStorageSOPInstanceUID == pseudonymous_uid(original, KEY)


def test_empty_key_rejected() -> None:
    with pytest.raises(ValueError, match="key"):
        deidentify(_sample("CT_small.dcm"), b"")


# --- MR sequence classification ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("t1ce", "T1ce"),
        ("T1C", "T1ce"),
        ("AX T1 POST", "T1ce"),
        ("T1+C", "T1ce"),
        ("T1 + C", "T1ce"),
        ("MPRAGE GD", "T1ce"),
        ("t1_mprage_tra_Gd", "T1ce"),
        ("Post Contrast AX", "T1ce"),
        ("T1W_SE+C", "T1ce"),
        ("t1 km tra", "T1ce"),
        ("FLAIR", "FLAIR"),
        ("AX T2 FLAIR", "FLAIR"),
        ("t2_flair_tra_p2", "FLAIR"),
        ("T2F", "FLAIR"),
        ("t2_tirm_tra_dark-fluid", "FLAIR"),
        ("T2W", "T2"),
        ("t2_tse_tra", "T2"),
        ("AX T2", "T2"),
        ("T2 weighted", "T2"),
        ("T1W", "T1"),
        ("t1n", "T1"),
        ("SAG T1 SE", "T1"),
        ("t1_mprage_sag", "T1"),
        ("T1 FLAIR SAG", "T1"),
        ("T1 cor", "T1"),
        ("DWI b1000", "other"),
        ("T2* GRE", "other"),
        ("t2star_hemo", "other"),
        ("SWI", "other"),
        ("localizer", "other"),
    ],
)
def test_classify_by_series_description(description: str, expected: str) -> None:
    assert classify_mr_sequence(_mr(SeriesDescription=description)) == expected


def test_protocol_name_used_when_series_description_says_nothing() -> None:
    ds = _mr(SeriesDescription="Series 5", ProtocolName="AX FLAIR")
    assert classify_mr_sequence(ds) == "FLAIR"


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"ScanningSequence": "SE", "RepetitionTime": "500", "EchoTime": "15"}, "T1"),
        ({"ScanningSequence": "SE", "RepetitionTime": "4000", "EchoTime": "100"}, "T2"),
        (
            {
                "ScanningSequence": ["SE", "IR"],
                "InversionTime": "2500",
                "RepetitionTime": "9000",
                "EchoTime": "120",
            },
            "FLAIR",
        ),
        (
            {
                "ScanningSequence": ["GR", "IR"],
                "InversionTime": "900",
                "RepetitionTime": "2300",
                "EchoTime": "3",
            },
            "T1",
        ),
        (
            {
                "ScanningSequence": "GR",
                "RepetitionTime": "500",
                "EchoTime": "15",
                "ContrastBolusAgent": "Gadovist",
            },
            "T1ce",
        ),
        ({"SeriesDescription": "T1 SE", "ContrastBolusAgent": "Gd-DTPA"}, "T1ce"),
        ({"ScanningSequence": "EP", "RepetitionTime": "3000", "EchoTime": "50"}, "other"),
        ({}, "other"),
    ],
)
def test_classify_by_acquisition_attributes(attributes: dict[str, object], expected: str) -> None:
    assert classify_mr_sequence(_mr(**attributes)) == expected


def test_custom_sequence_rules() -> None:
    rules = SequenceRules(t1=(r"\bspecial anatomy\b",), flair_min_inversion_ms=3000)
    assert classify_mr_sequence(_mr(SeriesDescription="Special Anatomy"), rules) == "T1"
    assert classify_mr_sequence(_mr(SeriesDescription="Special Anatomy")) == "other"
    long_ti = _mr(ScanningSequence=["SE", "IR"], InversionTime="2500")
    assert classify_mr_sequence(long_ti, rules) == "T1"
    assert classify_mr_sequence(long_ti) == "FLAIR"


def test_deidentify_classifies_the_original_mr_and_removes_descriptions() -> None:
    ds = _sample("MR_small.dcm")
    ds.SeriesDescription = "AX FLAIR"
    result = deidentify(ds, KEY)
    assert result.sequence_type == "FLAIR"
    assert "SeriesDescription" not in result.dataset
    rules = SequenceRules(flair=(), t2=(r"flair",))
    assert deidentify(ds, KEY, sequence_rules=rules).sequence_type == "T2"


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_malformed_values_in_a_file_do_not_break_de_identification() -> None:
    ds = _sample("MR_small.dcm")
    ds.add_new(Tag("RepetitionTime"), "LO", "bad")
    ds.add_new(Tag("PatientAge"), "LO", "old")
    ds.SeriesDescription = "series 3"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    malformed = pydicom.dcmread(io.BytesIO(buffer.getvalue()))

    result = deidentify(malformed, KEY)
    assert result.sequence_type == "other"
    assert result.age_band is None
    assert "PatientAge" not in result.dataset
    _encode(result.dataset)


def test_acquisition_fallback_on_real_mr_file() -> None:
    assert deidentify(_sample("MR_small.dcm"), KEY).sequence_type == "T2"


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm"])
def test_non_mr_has_no_sequence_type(name: str) -> None:
    assert deidentify(_sample(name), KEY).sequence_type is None
