"""Re-identify a built result object in memory, for one send to one destination.

The SR and SEG builders copy MedVision's pseudonymous patient and study attributes and
reference the stored instances by their pseudonymous UIDs. A PACS files an object by its
patient and study, so the copy that leaves for a configured destination carries the
originals instead: the patient/study attributes from the re-identification record, and
every UI value (at any depth) that the record maps back to an original UID. Everything
else — the object's own UIDs, its content, its coded values — is left exactly as built.

Nothing here writes or logs: the re-identified copy exists only in the sender's memory
while it is sent.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pydicom
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from control.results.records import ReidRecord

__all__ = ["PATIENT_STUDY_KEYWORDS", "reidentify"]

#: Attributes taken from the record (set when the original had them, emptied when it did
#: not: a pseudonymous value must not go out beside the original patient, and most of them
#: are Type 2, present even when empty). Study Instance UID is restored through the UID map
#: like every other UID.
PATIENT_STUDY_KEYWORDS = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
)
#: Attributes that describe a de-identified object; the re-identified copy is not one.
_DEIDENTIFICATION_MARKS = (
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
)


def reidentify(ds: pydicom.Dataset, record: ReidRecord) -> pydicom.Dataset:
    """A copy of ``ds`` carrying the original patient, study and referenced UIDs.

    Promises: ``ds`` is not changed; in the copy every UI value (top level and inside
    sequences, file meta included) found in ``record.uid_map`` is replaced by its original;
    :data:`PATIENT_STUDY_KEYWORDS` take the record's values (emptied when the record has
    none); PatientIdentityRemoved is ``NO`` and the de-identification method attributes are
    gone. No other attribute changes.
    """
    out = copy.deepcopy(ds)
    _swap_uids(out, record.uid_map)
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        _swap_uids(meta, record.uid_map)
    for keyword in PATIENT_STUDY_KEYWORDS:
        original = record.identifying.get(keyword)
        if original:
            setattr(out, keyword, original)
        elif keyword in out:
            out[keyword].value = out[keyword].empty_value
    if "PatientIdentityRemoved" in out:
        out.PatientIdentityRemoved = "NO"
    for keyword in _DEIDENTIFICATION_MARKS:
        if keyword in out:
            delattr(out, keyword)
    return out


def _swap_uids(ds: pydicom.Dataset, uid_map: Mapping[str, str]) -> None:
    """Replace, in place and at every depth, each UI value that ``uid_map`` maps."""
    stack = [ds]
    while stack:
        current = stack.pop()
        for tag in list(current.keys()):
            element: DataElement = current[tag]
            if element.VR == "SQ":
                stack.extend(element.value)
            elif element.VR == "UI" and element.value:
                element.value = _mapped(element.value, uid_map)


def _mapped(value: object, uid_map: Mapping[str, str]) -> object:
    if isinstance(value, MultiValue | list):
        return [uid_map.get(str(item), str(item)) for item in value]
    text = str(value)
    return uid_map.get(text, text)
