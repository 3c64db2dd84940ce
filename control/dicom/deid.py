"""DICOM de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile.

MedVision applies the Basic Profile with the Retain Longitudinal Temporal Information with
Modified Dates option: every attribute of Table E.1-1 is removed, emptied or replaced (see
``control.dicom.profile.choose_action``), private attributes are removed at every depth,
instance UIDs are replaced by keyed pseudonyms, and dates are shifted by a per-patient
offset so intervals within a patient survive. What the platform needs after identity is gone
(age band, sex, MR sequence type, burned-in annotation flag) is returned beside the dataset.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import pydicom
from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import FileDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from control.dicom.profile import Action, choose_action
from control.dicom.sequences import SequenceRules, SequenceType, classify_mr_sequence

__all__ = [
    "REIDENTIFICATION_KEYWORDS",
    "DeidResult",
    "SequenceRules",
    "classify_mr_sequence",
    "deidentify",
    "pseudonymous_uid",
]

#: Longest date shift, in days (about ten years).
MAX_DATE_SHIFT_DAYS = 3650

_DICOM_ROOT_UID = "1.2.840.10008."
_AGE_BANDS = ("0-20", "20-40", "40-60", "60-80", "80+")
_AGE_PATTERN = re.compile(r"(\d{1,3})\s*([DWMY])")
_DAYS_PER_AGE_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
_DATETIME_PATTERN = re.compile(r"(\d{8})(.*)", re.DOTALL)
_STUDY_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_DUMMY_TEXT = {"PN": "ANONYMOUS", "TM": "000000", "AS": "000Y", "IS": "0", "DS": "0"}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMERIC_VRS = frozenset({"AT", "FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})
_IDENTIFYING_FILE_META = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "SourcePresentationAddress",
    "SendingPresentationAddress",
    "ReceivingPresentationAddress",
    "PrivateInformationCreatorUID",
    "PrivateInformation",
)
_DEIDENTIFICATION_METHOD = "MedVision: PS3.15 E.1 Basic Profile, Modified Dates Option"
#: The identifying header subset kept (encrypted, see control.results.records) so results can
#: be filed under the patient's own study in the PACS: patient and study identity only.
REIDENTIFICATION_KEYWORDS = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
)
_DEIDENTIFICATION_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


@dataclass(frozen=True)
class DeidResult:
    """A de-identified copy of a dataset and what was learnt from the original."""

    dataset: pydicom.Dataset
    original_study_uid: str
    original_series_uid: str
    original_sop_instance_uid: str
    original_patient_id: str
    pseudo_patient_id: str
    age_band: str | None
    sex: str | None
    sequence_type: SequenceType | None
    burned_in_annotation: bool
    date_shift_days: int
    #: The original values of :data:`REIDENTIFICATION_KEYWORDS` present in ``ds`` (PHI:
    #: encrypted before it is stored, never logged).
    identifying: dict[str, str] = field(default_factory=dict, repr=False)
    #: Every UID the copy carries in place of an original one, pseudonym -> original.
    uid_map: dict[str, str] = field(default_factory=dict, repr=False)


def pseudonymous_uid(original_uid: str, key: bytes) -> str:
    """A deterministic ``2.25.<decimal>`` UID for ``original_uid`` under ``key``.

    The decimal is the first 128 bits of HMAC-SHA256(key, uid) (trailing NUL/space padding
    ignored), so the result is at most 44 characters, a valid UID, identical for identical
    inputs and unlinkable to the original without the key.
    """
    digest = hmac.new(key, original_uid.strip("\0 ").encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def deidentify(
    ds: pydicom.Dataset,
    key: bytes,
    *,
    sequence_rules: SequenceRules | None = None,
    in_place: bool = False,
) -> DeidResult:
    """De-identify a copy of ``ds`` with the Basic Profile; ``ds`` itself is not changed.

    The copy has: every Table E.1-1 attribute removed, emptied or replaced at any depth;
    all private attributes and overlay groups removed; every instance UID replaced by
    ``pseudonymous_uid`` (class, transfer-syntax, coding-scheme and DICOM-registered UIDs
    kept; file meta MediaStorageSOPInstanceUID follows SOPInstanceUID); every remaining DA/DT
    shifted by ``date_shift_days``; PatientName and PatientID set to ``pseudo_patient_id``;
    PatientBirthDate and PatientSex empty; the preamble zeroed; PatientIdentityRemoved,
    DeidentificationMethod(CodeSequence) and LongitudinalTemporalInformationModified set.
    Pixel data (compressed or not) is untouched. ``key`` must be the deployment's secret:
    the same key gives the same pseudonyms, UIDs and date shift for the same patient.

    ``in_place=True`` skips the copy: ``ds`` itself becomes the de-identified data set (the
    same one returned in ``dataset``, element for element what the copy would hold). For a
    caller that parsed ``ds`` only to de-identify it (the ingest), it saves a deep copy of
    every element. Everything learnt from the original is read before anything is changed.
    """
    if not key:
        raise ValueError("de-identification key must not be empty")
    identity = _patient_identity(ds)
    pseudo_patient_id = "ANON-" + _keyed_digest(key, "patient-id", identity).hex()[:12].upper()
    shift_days = -(
        1
        + int.from_bytes(_keyed_digest(key, "date-shift", identity)[:8], "big")
        % MAX_DATE_SHIFT_DAYS
    )
    is_mr = _text(ds, "Modality").upper() == "MR"
    learnt = DeidResult(  # everything read from the original, before anything changes
        dataset=ds,
        original_study_uid=_text(ds, "StudyInstanceUID"),
        original_series_uid=_text(ds, "SeriesInstanceUID"),
        original_sop_instance_uid=_text(ds, "SOPInstanceUID"),
        original_patient_id=_text(ds, "PatientID"),
        pseudo_patient_id=pseudo_patient_id,
        age_band=_age_band(ds),
        sex=_sex(ds),
        sequence_type=classify_mr_sequence(ds, sequence_rules) if is_mr else None,
        burned_in_annotation=_text(ds, "BurnedInAnnotation").upper() == "YES",
        date_shift_days=shift_days,
        identifying={
            keyword: value for keyword in REIDENTIFICATION_KEYWORDS if (value := _text(ds, keyword))
        },
    )

    out = ds if in_place else copy.deepcopy(ds)
    cleaner = _Cleaner(key, shift_days, {})
    cleaner.clean(out)
    out.PatientName = pseudo_patient_id
    out.PatientID = pseudo_patient_id
    _mark_deidentified(out)
    _clean_file_meta(out, cleaner)

    return dataclasses.replace(learnt, dataset=out, uid_map=dict(cleaner.replaced))


@dataclass(frozen=True)
class _Cleaner:
    """Applies the chosen action to every element of a dataset, recursing into sequences."""

    key: bytes
    shift_days: int
    #: pseudonym -> original of every UID replaced so far.
    replaced: dict[str, str]

    def clean(self, ds: pydicom.Dataset) -> None:
        for tag in list(ds.keys()):
            if tag.is_private or tag.element == 0x0000:
                del ds[tag]
                continue
            elem = ds[tag]
            self._apply(ds, elem, choose_action(tag, elem.VR))

    def _apply(self, ds: pydicom.Dataset, elem: DataElement, action: Action) -> None:
        if action is Action.REMOVE:
            del ds[elem.tag]
        elif action is Action.EMPTY:
            _empty(elem)
        elif action is Action.DUMMY:
            _set_dummy(elem)
        elif action is Action.REPLACE_UID:
            elem.value = _map_values(elem.value, self.replace_uid)
        elif action is Action.SHIFT_DATE:
            shift = _shift_date if elem.VR == "DA" else _shift_datetime
            elem.value = _map_values(elem.value, lambda value: shift(value, self.shift_days))
        elif action is Action.CLEAN_SEQUENCE:
            for item in elem.value:
                self.clean(item)

    def replace_uid(self, uid: str) -> str:
        """The pseudonym of an instance UID; DICOM-registered UIDs pass unchanged."""
        if not uid or uid in UID_dictionary or uid.startswith(_DICOM_ROOT_UID):
            return uid
        pseudonym = pseudonymous_uid(uid, self.key)
        self.replaced[pseudonym] = uid.strip("\0 ")
        return pseudonym


def _map_values(value: object, convert: Callable[[str], str]) -> object:
    """Apply ``convert`` to each string of a single or multi-valued element value."""
    if isinstance(value, MultiValue | list):
        return [convert(str(item)) for item in value]
    if value is None or value == "":
        return value
    return convert(str(value))


def _empty(elem: DataElement) -> None:
    elem.value = Sequence() if elem.VR == "SQ" else elem.empty_value


def _set_dummy(elem: DataElement) -> None:
    vr = elem.VR.split(" or ")[0]
    if vr in _BINARY_VRS:
        elem.value = b"\x00\x00"
    elif vr in _NUMERIC_VRS:
        elem.value = 0
    else:
        elem.value = _DUMMY_TEXT.get(vr, "ANONYMIZED")


def _shift_date(value: str, days: int) -> str:
    """Shift a DA value; an unparseable one becomes empty rather than leak."""
    parsed = _parse_date(value)
    if parsed is None:
        return ""
    try:
        shifted = parsed + timedelta(days=days)
    except OverflowError:
        return ""
    return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"


def _shift_datetime(value: str, days: int) -> str:
    """Shift the date part of a DT value, keeping time and offset; partial dates become empty."""
    match = _DATETIME_PATTERN.fullmatch(value.strip())
    if match is None:
        return ""
    shifted = _shift_date(match[1], days)
    return shifted + match[2] if shifted else ""


def _parse_date(value: str) -> date | None:
    digits = value.strip().replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _mark_deidentified(ds: pydicom.Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = _DEIDENTIFICATION_METHOD
    codes = []
    for value, meaning in _DEIDENTIFICATION_CODES:
        code = pydicom.Dataset()
        code.CodeValue = value
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = meaning
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def _clean_file_meta(ds: pydicom.Dataset, cleaner: _Cleaner) -> None:
    if isinstance(ds, FileDataset):
        ds.preamble = b"\0" * 128
        ds.filename = None
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for keyword in _IDENTIFYING_FILE_META:
        if keyword in meta:
            delattr(meta, keyword)
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    elif "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = cleaner.replace_uid(meta.MediaStorageSOPInstanceUID)


def _patient_identity(ds: pydicom.Dataset) -> str:
    """The string the patient pseudonym and date shift derive from.

    PatientID qualified by its issuer; without a PatientID, the StudyInstanceUID, so that
    unidentified studies are not merged into one pseudo-patient.
    """
    patient_id = _text(ds, "PatientID")
    if patient_id:
        return f"patient\0{_text(ds, 'IssuerOfPatientID')}\0{patient_id}"
    return f"study\0{_text(ds, 'StudyInstanceUID')}"


def _keyed_digest(key: bytes, purpose: str, identity: str) -> bytes:
    message = f"{purpose}\0{identity}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def _age_band(ds: pydicom.Dataset) -> str | None:
    years = _age_years(ds)
    if years is None:
        return None
    return _AGE_BANDS[min(years // 20, len(_AGE_BANDS) - 1)]


def _age_years(ds: pydicom.Dataset) -> int | None:
    """Completed years from PatientAge, else from PatientBirthDate and the study date."""
    age = _AGE_PATTERN.fullmatch(_text(ds, "PatientAge").upper())
    if age is not None:
        return int(int(age[1]) * _DAYS_PER_AGE_UNIT[age[2]] // 365.25)
    birth = _parse_date(_text(ds, "PatientBirthDate"))
    reference = next(
        (
            parsed
            for keyword in _STUDY_DATE_KEYWORDS
            if (parsed := _parse_date(_text(ds, keyword))) is not None
        ),
        None,
    )
    if birth is None or reference is None or reference < birth:
        return None
    before_birthday = (reference.month, reference.day) < (birth.month, birth.day)
    return reference.year - birth.year - before_birthday


def _sex(ds: pydicom.Dataset) -> str | None:
    sex = _text(ds, "PatientSex").upper()
    return sex if sex in ("M", "F", "O") else None


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()
