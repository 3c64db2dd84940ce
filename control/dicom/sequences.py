"""MR sequence classification into the BraTS channels (T1, T1ce, T2, FLAIR).

Classification reads the free-text series description and protocol name first, because
vendors name series reliably ("t1_mprage_tra_gd", "T2W_TSE", "AX FLAIR"), and falls back to
the acquisition attributes (scanning sequence, inversion/repetition/echo times, contrast
agent) when no description matches. It must run on the original dataset: de-identification
removes the descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pydicom
from pydicom.multival import MultiValue

SequenceType = Literal["T1", "T1ce", "T2", "FLAIR", "other"]

#: Descriptions are lower-cased and these separators turned into spaces before matching.
_SEPARATORS = re.compile(r"[_\-/\\.,;:()\[\]]+")


@dataclass(frozen=True)
class SequenceRules:
    """Regular expressions per sequence type and acquisition-time thresholds (milliseconds).

    Patterns are searched (``re.search``) in the lower-cased description with ``_ - / \\ .``
    and brackets replaced by spaces. Types are tried in the order FLAIR, T1ce, T2, T1, so a
    "T2 FLAIR" is FLAIR and a "T1 post Gd" is T1ce. A description classified T1 becomes T1ce
    when ContrastBolusAgent is present.
    """

    flair: tuple[str, ...] = (
        r"(?<!t1 )(?<!t1)flair",
        r"\bt2 ?f\b",
        r"\bdark ?fluid\b",
        r"\btirm\b",
    )
    t1ce: tuple[str, ...] = (
        r"\bt1 ?w? ?(ce|c|gd|gad|km|contrast|post|\+ ?c|\+ ?gd|c\+)(?![a-z0-9])",
        r"\bpost ?(contrast|gd|gad|gado|c)\b",
        r"\b(mp ?rage|spgr|bravo|vibe|tfe) .*\b(gd|gad|post|contrast)\b",
        r"\b(gd|gad|gado)\b",
        r"\+ ?c\b",
        r"\bc\+",
    )
    t2: tuple[str, ...] = (r"\bt2(?! ?\*| ?star)( ?w| ?weighted)?(?![a-z0-9*])",)
    t1: tuple[str, ...] = (
        r"\bt1 ?(w|n|weighted)?(?![a-z0-9])",
        r"\bmp ?rage\b",
        r"\bspgr\b",
        r"\bbravo\b",
    )
    flair_min_inversion_ms: float = 1500.0
    t1_max_repetition_ms: float = 800.0
    t1_max_echo_ms: float = 30.0
    t2_min_repetition_ms: float = 2000.0
    t2_min_echo_ms: float = 80.0

    def description_patterns(self) -> tuple[tuple[SequenceType, tuple[str, ...]], ...]:
        """The pattern groups in the order they are tried."""
        return (("FLAIR", self.flair), ("T1ce", self.t1ce), ("T2", self.t2), ("T1", self.t1))


DEFAULT_SEQUENCE_RULES = SequenceRules()


def classify_mr_sequence(ds: pydicom.Dataset, rules: SequenceRules | None = None) -> SequenceType:
    """Classify an MR series as "T1", "T1ce", "T2", "FLAIR" or "other".

    Tries SeriesDescription, then ProtocolName, against ``rules`` (defaults:
    ``DEFAULT_SEQUENCE_RULES``); when neither matches, uses ScanningSequence (IR with a long
    InversionTime is FLAIR, with a short one T1), RepetitionTime and EchoTime. A T1 result
    becomes T1ce when ContrastBolusAgent is non-empty. Never raises for missing or malformed
    attributes; answers "other" when nothing decides.
    """
    rules = rules or DEFAULT_SEQUENCE_RULES
    found = _classify_descriptions(ds, rules) or _classify_acquisition(ds, rules)
    if found == "T1" and _has_contrast(ds):
        return "T1ce"
    return found or "other"


def _classify_descriptions(ds: pydicom.Dataset, rules: SequenceRules) -> SequenceType | None:
    for keyword in ("SeriesDescription", "ProtocolName"):
        text = _normalise(str(ds.get(keyword) or ""))
        if not text:
            continue
        for sequence_type, patterns in rules.description_patterns():
            if any(re.search(pattern, text) for pattern in patterns):
                return sequence_type
    return None


def _classify_acquisition(ds: pydicom.Dataset, rules: SequenceRules) -> SequenceType | None:
    scanning = {str(value).strip().upper() for value in _values(ds.get("ScanningSequence"))}
    inversion = _number(ds, "InversionTime")
    repetition = _number(ds, "RepetitionTime")
    echo = _number(ds, "EchoTime")
    if "IR" in scanning and inversion is not None:
        return "FLAIR" if inversion >= rules.flair_min_inversion_ms else "T1"
    if repetition is None or echo is None:
        return None
    if repetition <= rules.t1_max_repetition_ms and echo <= rules.t1_max_echo_ms:
        return "T1"
    if repetition >= rules.t2_min_repetition_ms and echo >= rules.t2_min_echo_ms:
        return "T2"
    return None


def _has_contrast(ds: pydicom.Dataset) -> bool:
    return bool(str(ds.get("ContrastBolusAgent") or "").strip())


def _normalise(text: str) -> str:
    return " ".join(_SEPARATORS.sub(" ", text.lower()).split())


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _number(ds: pydicom.Dataset, keyword: str) -> float | None:
    """The first value of a numeric attribute, or None when absent or malformed."""
    try:
        values = _values(ds.get(keyword))
        return float(str(values[0])) if values else None
    except ValueError:
        return None
