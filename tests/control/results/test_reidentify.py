"""Re-identification of built result objects, in memory: every mapped UID swapped back, the
patient/study attributes restored, nothing else changed, the input left alone."""

from __future__ import annotations

import copy
import io
from datetime import UTC, datetime

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from control.dicom.deid import REIDENTIFICATION_KEYWORDS, deidentify
from control.results.collect import label_readings
from control.results.content import Algorithm, ClassificationReport, Verifier
from control.results.records import RecordCipher, ReidRecord
from control.results.reidentify import PATIENT_STUDY_KEYWORDS, reidentify
from control.results.sr import build_cxr_sr
from tests.fixtures.dx import chest_dx

KEY = b"k" * 32
ORIGINAL_STUDY = "1.2.826.0.1.3680043.8.498.100"
IDENTITY = {
    "PatientID": "MRN-4711",
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19610203",
    "PatientSex": "F",
    "AccessionNumber": "ACC-99",
    "StudyTime": "101112",
    "StudyID": "S-7",
    "ReferringPhysicianName": "House^Greg",
}
CHANGED_BY_REIDENTIFICATION = {
    *PATIENT_STUDY_KEYWORDS,
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
}


def original_dx() -> pydicom.Dataset:
    """A DX radiograph with a full identifying header (synthetic values)."""
    ds = pydicom.dcmread(io.BytesIO(chest_dx(32, study_uid=ORIGINAL_STUDY, patient_id="MRN-4711")))
    for keyword, value in IDENTITY.items():
        setattr(ds, keyword, value)
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.200"
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [0.14, 0.14]
    return ds


def _walk_uis(ds: Dataset) -> list[str]:
    values: list[str] = []
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            items = element.value if isinstance(element.value, list | tuple) else [element.value]
            values.extend(str(item) for item in items)
    return values


@pytest.fixture
def deidentified():
    original = original_dx()
    return original, deidentify(original, KEY)


@pytest.fixture
def record(deidentified) -> ReidRecord:
    _original, result = deidentified
    return ReidRecord(result.identifying, result.uid_map)


def test_deidentification_reports_the_identifying_subset_and_every_replaced_uid(deidentified):
    original, result = deidentified
    assert set(result.identifying) <= set(REIDENTIFICATION_KEYWORDS)
    assert result.identifying["PatientID"] == "MRN-4711"
    assert result.identifying["StudyInstanceUID"] == ORIGINAL_STUDY
    assert result.identifying["AccessionNumber"] == "ACC-99"
    assert result.identifying["StudyDate"] == "20260101"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        pseudonym = str(result.dataset[keyword].value)
        assert result.uid_map[pseudonym] == str(original[keyword].value)
    assert result.uid_map[str(result.dataset.FrameOfReferenceUID)] == original.FrameOfReferenceUID
    # The record's fields stay out of the result's repr.
    assert "Doe^Jane" not in repr(result) and "ACC-99" not in repr(result)
    assert original.FrameOfReferenceUID not in repr(result)


def test_record_repr_and_ciphertext_hold_no_identifier(record):
    assert "MRN-4711" not in repr(record) and ORIGINAL_STUDY not in repr(record)
    cipher = RecordCipher(KEY)
    sealed = cipher.seal(record.identifying)
    assert b"MRN-4711" not in sealed and ORIGINAL_STUDY.encode() not in sealed
    assert cipher.open(sealed) == dict(record.identifying)


def test_a_built_sr_is_filed_under_the_original_patient_and_study(deidentified, record):
    original, result = deidentified
    sr = build_cxr_sr(_report(result.dataset))
    before = copy.deepcopy(sr)

    out = reidentify(sr, record)

    assert sr == before, "the input must not change"
    assert out.PatientID == "MRN-4711"
    assert str(out.PatientName) == "Doe^Jane"
    assert out.PatientBirthDate == "19610203" and out.PatientSex == "F"
    assert out.StudyInstanceUID == ORIGINAL_STUDY
    assert out.AccessionNumber == "ACC-99" and out.StudyID == "S-7"
    assert out.StudyDate == "20260101" and out.StudyTime == "101112"
    assert str(out.ReferringPhysicianName) == "House^Greg"
    # Every reference to the source image now names the original series and instance.
    uis = _walk_uis(out)
    assert original.SOPInstanceUID in uis and original.SeriesInstanceUID in uis
    assert not set(uis) & set(record.uid_map), "a pseudonymous UID is left"
    # The object's own identity is MedVision's, unchanged.
    assert out.SOPInstanceUID == sr.SOPInstanceUID
    assert out.SeriesInstanceUID == sr.SeriesInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == sr.SOPInstanceUID


def test_nothing_but_the_mapped_uids_and_patient_study_attributes_changes(deidentified, record):
    _original, result = deidentified
    sr = build_cxr_sr(_report(result.dataset))

    out = reidentify(sr, record)

    unmapped = _swap_back(out, record)
    for element in sr:
        if element.keyword in CHANGED_BY_REIDENTIFICATION:
            continue
        assert element.keyword in unmapped, element.keyword
        assert unmapped[element.tag] == element, element.keyword
    extra = {e.keyword for e in out} - {e.keyword for e in sr} - CHANGED_BY_REIDENTIFICATION
    assert not extra


def test_uids_are_swapped_at_every_depth_and_in_multi_valued_elements():
    mapping = {"2.25.1": "1.2.3.1", "2.25.2": "1.2.3.2", "2.25.3": "1.2.3.3"}
    record = ReidRecord({"PatientID": "P"}, mapping)
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "2.25.2"
    inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    deeper = Dataset()
    deeper.ReferencedSOPInstanceUID = "2.25.3"
    inner.ReferencedImageSequence = Sequence([deeper])
    ds = Dataset()
    ds.StudyInstanceUID = "2.25.1"
    ds.SOPInstanceUID = "2.25.99"  # not in the map: the object's own UID
    ds.RelatedGeneralSOPClassUID = ["2.25.1", "2.25.99"]
    ds.ReferencedSeriesSequence = Sequence([inner])
    ds.PatientID = "ANON-1"
    ds.PatientName = "ANON-1"

    out = reidentify(ds, record)

    assert out.StudyInstanceUID == "1.2.3.1"
    assert out.SOPInstanceUID == "2.25.99"
    assert list(out.RelatedGeneralSOPClassUID) == ["1.2.3.1", "2.25.99"]
    assert out.ReferencedSeriesSequence[0].ReferencedSOPInstanceUID == "1.2.3.2"
    assert out.ReferencedSeriesSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    nested = out.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
    assert nested.ReferencedSOPInstanceUID == "1.2.3.3"
    # The record had a Patient ID but no name: the pseudonymous name does not go out.
    assert out.PatientID == "P" and out.PatientName == ""
    assert ds.StudyInstanceUID == "2.25.1" and ds.PatientID == "ANON-1"


def _swap_back(ds: Dataset, record: ReidRecord) -> Dataset:
    """``ds`` with the originals mapped back to pseudonyms (to compare with the input)."""
    back = ReidRecord({}, {original: pseudo for pseudo, original in record.uid_map.items()})
    restored = reidentify(ds, back)
    return restored


def _report(source: pydicom.Dataset) -> ClassificationReport:
    from control.db.models import Finding

    finding = Finding(
        labels=["Effusion"],
        probabilities={"Atelectasis": 0.1, "Effusion": 0.8},
        decisions=[],
    )
    return ClassificationReport(
        source_images=[source],
        readings=label_readings(finding),
        algorithm=Algorithm("cxr", "3", None, True),
        verifier=Verifier("Jane Radiologist", "MedVision", datetime(2026, 1, 2, tzinfo=UTC)),
        note=None,
        series_instance_uid="2.25.555",
        sop_instance_uid="2.25.556",
    )
