"""Coded concepts of MedVision's DICOM results (SR and SEG), and where each code comes from.

Sources, in order of preference:

- DICOM PS3.16 context groups, as shipped in pydicom's code dictionary
  (``pydicom.sr.codedict.codes``): the chest findings of CID 6102/6104/6105 (Chest CAD), the
  segmentation types of CID 7159 "Lesion Segmentation Type" / CID 7194, CID 240 "Present
  Absent", CID 7181 units, CID 7162 algorithm families, CID 100/646 procedures.
- SNOMED CT International concepts that PS3.16 does not list, taken from the SNOMED CT
  browser: atelectasis, pneumonia, lung consolidation, pulmonary emphysema and plain chest
  X-ray.
- The private coding scheme ``99MEDVISION`` (PS3.16 8.2: designators beginning ``99`` are
  local), declared in every object that uses it through CodingSchemeIdentificationSequence,
  for concepts with no faithful standard code: the ChestX-ray14 labels "Pleural_Thickening"
  and "Hernia" (in ChestX-ray14 mostly, but not only, hiatal hernia, so SNOMED's "Hiatal
  hernia" would overstate it), the five RSNA haemorrhage subtypes (no concept id could be
  checked here) and MedVision's own review vocabulary (radiologist decision,
  AI result, training data).
"""

from __future__ import annotations

from types import MappingProxyType

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

__all__ = [
    "AI_RESULT",
    "ALGORITHM_FAMILY",
    "BRAIN",
    "BRATS_SEGMENTS",
    "BRATS_SEGMENT_CATEGORY",
    "CHEST_XRAY_PROCEDURE",
    "CT_HEAD_FINDINGS",
    "CXR_FINDINGS",
    "DECISIONS",
    "HEAD_CT_PROCEDURE",
    "MEDVISION_SCHEME",
    "MR_BRAIN_PROCEDURE",
    "PRESENCE",
    "PRESENT_ABSENT",
    "PROBABILITY",
    "PROBABILITY_UNIT",
    "RADIOLOGIST_DECISION",
    "REASON",
    "REGION_VOLUMES",
    "REPORT_NOTE",
    "TRAINING_DATA",
    "VOLUME",
    "VOLUME_UNIT",
    "medvision_code",
    "medvision_coding_scheme",
]

MEDVISION_SCHEME = "99MEDVISION"
"""Designator of MedVision's private coding scheme (declared in each object that uses it)."""


def medvision_code(value: str, meaning: str) -> Code:
    """A concept of the private ``99MEDVISION`` coding scheme."""
    return Code(value, MEDVISION_SCHEME, meaning)


def medvision_coding_scheme() -> CodingSchemeIdentificationItem:
    """The CodingSchemeIdentificationSequence item that declares ``99MEDVISION``."""
    return CodingSchemeIdentificationItem(
        designator=MEDVISION_SCHEME,
        name="MedVision local codes",
        responsible_organization="MedVision",
    )


# --- Chest X-ray (cxr): the 14 ChestX-ray14 labels, in the model's label order. ---

CXR_FINDINGS: MappingProxyType[str, Code] = MappingProxyType(
    {
        "Atelectasis": Code("46621007", "SCT", "Atelectasis"),  # SNOMED CT browser
        "Cardiomegaly": codes.SCT.Cardiomegaly,  # 287272002, PS3.16 CID 12248
        "Effusion": codes.SCT.PleuralEffusion,  # 60046008, PS3.16 CID 645
        "Infiltration": codes.DCM.Infiltrate,  # 112121, PS3.16 CID 6104
        "Mass": codes.SCT.Mass,  # 4147007, PS3.16 CID 6104
        "Nodule": codes.SCT.Nodule,  # 27925004, PS3.16 CID 6104
        "Pneumonia": Code("233604007", "SCT", "Pneumonia"),  # SNOMED CT browser
        "Pneumothorax": codes.SCT.Pneumothorax,  # 36118008, PS3.16 CID 6105
        "Consolidation": Code("95436008", "SCT", "Lung consolidation"),  # SNOMED CT browser
        "Edema": codes.SCT.PulmonaryEdema,  # 19242006, PS3.16 CID 3700
        "Emphysema": Code("87433001", "SCT", "Pulmonary emphysema"),  # SNOMED CT browser
        "Fibrosis": codes.SCT.Fibrosis,  # 112674009, PS3.16 CID 6335
        "Pleural_Thickening": medvision_code("CXR-PT", "Pleural thickening"),
        "Hernia": medvision_code("CXR-HERNIA", "Hernia (chest radiograph)"),
    }
)
"""ChestX-ray14 label -> the finding concept of its measurement group."""

CHEST_XRAY_PROCEDURE = Code("399208008", "SCT", "Plain chest X-ray")
"""Procedure Reported of the chest X-ray SR (SNOMED CT browser)."""

# --- Head CT (ct_head): the RSNA 2019 haemorrhage labels, in the model's label order. ---

CT_HEAD_FINDINGS: MappingProxyType[str, Code] = MappingProxyType(
    {
        "any": codes.SCT.IntracranialHemorrhage,  # 1386000, pydicom's code dictionary
        # The subtypes are MedVision codes: pydicom's dictionary (PS3.16) lists none of them,
        # and no SNOMED CT browser can be reached from here to check a concept id.
        "epidural": medvision_code("ICH-EPIDURAL", "Epidural haemorrhage"),
        "intraparenchymal": medvision_code("ICH-IPH", "Intraparenchymal haemorrhage"),
        "intraventricular": medvision_code("ICH-IVH", "Intraventricular haemorrhage"),
        "subarachnoid": medvision_code("ICH-SAH", "Subarachnoid haemorrhage"),
        "subdural": medvision_code("ICH-SDH", "Subdural haemorrhage"),
    }
)
"""RSNA haemorrhage label -> the finding concept of its measurement group."""

HEAD_CT_PROCEDURE = codes.LN.HeadCT  # 24725-4, PS3.16 CID 646
"""Procedure Reported of the head CT SR."""

PROBABILITY = codes.DCM.Probability  # 122157
PROBABILITY_UNIT = codes.UCUM.NoUnits  # "1", PS3.16 CID 7181

PRESENCE = codes.DCM.PresenceOfProperty  # 121052, name of a CID 240 value
PRESENT_ABSENT: MappingProxyType[bool, Code] = MappingProxyType(
    {True: codes.SCT.Present, False: codes.SCT.Absent}  # PS3.16 CID 240
)

AI_RESULT = medvision_code("AI-RESULT", "AI result")
"""Name of the AI's own present/absent call (probability at or above the threshold)."""
RADIOLOGIST_DECISION = medvision_code("DECISION", "Radiologist decision")
DECISIONS: MappingProxyType[str, Code] = MappingProxyType(
    {
        "accepted": medvision_code("DECISION-ACCEPTED", "Accepted"),
        "rejected": medvision_code("DECISION-REJECTED", "Rejected"),
        "edited": medvision_code("DECISION-EDITED", "Edited"),
        "none": medvision_code("DECISION-NONE", "No decision"),
    }
)
"""Radiologist decision on an AI finding -> its coded value."""
REASON = codes.DCM.Comment  # 121106, the radiologist's free-text reason
REPORT_NOTE = codes.DCM.Comment  # 121106, the sign-off note
TRAINING_DATA = medvision_code("TRAINING-DATA", "Training data")
"""Text item naming the model's training data ("synthetic training data" when synthetic)."""

ALGORITHM_FAMILY = codes.DCM.ArtificialIntelligence  # 123110, PS3.16 CID 7162

# --- Brain MRI (brats): segments and region volumes. ---

MR_BRAIN_PROCEDURE = codes.LN.BrainMRI  # 24590-2, PS3.16 CID 646
BRAIN = codes.SCT.Brain  # 12738006, anatomic region of the segments

BRATS_SEGMENT_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure  # 49755003, CID 7150
BRATS_SEGMENTS: tuple[tuple[int, str, Code], ...] = (
    (1, "NCR", codes.SCT.Necrosis),  # 6574001, PS3.16 CID 7159
    (2, "ED", codes.SCT.Edema),  # 79654002, PS3.16 CID 7159
    (3, "ET", codes.NCIt.EnhancingLesion),  # C113842, PS3.16 CID 7159
)
"""(label value in the mask, segment label, segmented property type) per BraTS label."""

VOLUME = codes.SCT.Volume  # 118565006
VOLUME_UNIT = Code("ml", "UCUM", "milliliter")
REGION_VOLUMES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("enhancing_tumour", "Enhancing tumour", (3,)),
    ("tumour_core", "Tumour core", (1, 3)),
    ("whole_tumour", "Whole tumour", (1, 2, 3)),
)
"""(region key of ``region_ml``, tracking label, the segment numbers the region is made of)."""
