"""The PS3.15 Annex E Basic Application Level Confidentiality Profile attribute table.

The table itself (several hundred tags with their allowed actions) comes from the
``dicom-anonymizer`` package, which transcribes Table E.1-1 per DICOM edition. This module
turns it into a lookup by tag and decides, for each attribute and value representation, which
single action MedVision applies where the profile offers a choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.datadict import keyword_for_tag
from pydicom.tag import BaseTag, Tag

#: The DICOM edition of Table E.1-1 that the lookup is built from.
PROFILE_EDITION = "dicomfields_2026c"


class ProfileOption(Enum):
    """An action code of Table E.1-1 (a profile entry may allow several)."""

    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    REPLACE_UID = "U"
    CLEAN_SEQUENCE = "U*"


class Action(Enum):
    """What de-identification does to one data element."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    DUMMY = "dummy"
    REPLACE_UID = "replace_uid"
    SHIFT_DATE = "shift_date"
    CLEAN_SEQUENCE = "clean_sequence"


_X = ProfileOption.REMOVE
_Z = ProfileOption.EMPTY
_D = ProfileOption.DUMMY
_U = ProfileOption.REPLACE_UID

_CATEGORY_OPTIONS: Mapping[str, frozenset[ProfileOption]] = {
    "D_TAGS": frozenset({_D}),
    "Z_TAGS": frozenset({_Z}),
    "X_TAGS": frozenset({_X}),
    "U_TAGS": frozenset({_U}),
    "Z_D_TAGS": frozenset({_Z, _D}),
    "X_Z_TAGS": frozenset({_X, _Z}),
    "X_D_TAGS": frozenset({_X, _D}),
    "X_Z_D_TAGS": frozenset({_X, _Z, _D}),
    "X_Z_U_STAR_TAGS": frozenset({_X, _Z, ProfileOption.CLEAN_SEQUENCE}),
}


@dataclass(frozen=True)
class _MaskedEntry:
    """A repeating-group entry such as Overlay Data (60xx,3000) or Curve Data (50xx,xxxx)."""

    group: int
    element: int
    group_mask: int
    element_mask: int
    options: frozenset[ProfileOption]

    def matches(self, tag: BaseTag) -> bool:
        return (tag.group & self.group_mask) == (self.group & self.group_mask) and (
            tag.element & self.element_mask
        ) == (self.element & self.element_mask)


def _load_table() -> tuple[Mapping[BaseTag, frozenset[ProfileOption]], tuple[_MaskedEntry, ...]]:
    database = dicom_anonymization_database_selector(PROFILE_EDITION)
    exact: dict[BaseTag, frozenset[ProfileOption]] = {}
    masked: list[_MaskedEntry] = []
    for category, options in _CATEGORY_OPTIONS.items():
        for entry in database[category]:
            if len(entry) == 4:
                group, element, group_mask, element_mask = entry
                masked.append(_MaskedEntry(group, element, group_mask, element_mask, options))
            else:
                exact[Tag(entry[0], entry[1])] = options
    return MappingProxyType(exact), tuple(masked)


#: Exact-tag entries of Table E.1-1 and the options each allows.
BASIC_PROFILE, _MASKED_ENTRIES = _load_table()

#: Attributes whose action MedVision fixes regardless of what the profile allows.
_OVERRIDES: Mapping[BaseTag, Action] = {
    Tag("PatientBirthDate"): Action.EMPTY,
}


def profile_options(tag: BaseTag) -> frozenset[ProfileOption] | None:
    """The options Table E.1-1 allows for ``tag``, or None when the profile does not list it."""
    options = BASIC_PROFILE.get(tag)
    if options is not None:
        return options
    for entry in _MASKED_ENTRIES:
        if entry.matches(tag):
            return entry.options
    return None


def choose_action(tag: BaseTag, vr: str) -> Action:
    """The single action applied to a public (even-group) element with this tag and VR.

    Where the profile allows a choice, the choice keeps Type 1/2 attributes present (Z over X,
    D over X only where X is not allowed), removes free text and other optional attributes
    (X over D), and follows the Retain Longitudinal Temporal Information with Modified Dates
    option for dates: any DA/DT the profile does not require removing is shifted. Listed
    sequences are removed or emptied, except those marked U* (Referenced/Source Image
    Sequence), which are kept with their items cleaned. Overlay groups (60xx) are removed
    whole. Unlisted attributes are kept, with sequences cleaned recursively, dates shifted and
    UIDs replaced, except class, transfer-syntax and coding-scheme UIDs, which are kept.
    """
    override = _OVERRIDES.get(tag)
    if override is not None:
        return override
    if tag.group & 0xFF00 == 0x6000:
        # Overlay Data and Overlay Comments are X; an overlay plane without its data is
        # invalid, so the whole repeating group goes.
        return Action.REMOVE
    options = profile_options(tag)
    if options is None:
        return _unlisted_action(tag, vr)
    if vr == "UI":
        return Action.REPLACE_UID if options & {_U, _D} else _first_of(options, _Z, _X)
    if ProfileOption.CLEAN_SEQUENCE in options:
        return Action.CLEAN_SEQUENCE if vr == "SQ" else Action.REMOVE
    if vr == "SQ":
        return Action.REMOVE if _X in options else Action.EMPTY
    if vr in ("DA", "DT"):
        return Action.REMOVE if options == {_X} else Action.SHIFT_DATE
    return _first_of(options, _Z, _X, _D)


#: Unlisted UI attributes that name a class, syntax or coding scheme, never an instance.
_NON_INSTANCE_UID_KEYWORD = re.compile(r"SOPClass|TransferSyntax|ImplementationClass|CodingScheme")


def _unlisted_action(tag: BaseTag, vr: str) -> Action:
    if vr == "SQ":
        return Action.CLEAN_SEQUENCE
    if vr == "UI":
        if _NON_INSTANCE_UID_KEYWORD.search(keyword_for_tag(tag)):
            return Action.KEEP
        return Action.REPLACE_UID
    if vr in ("DA", "DT"):
        return Action.SHIFT_DATE
    return Action.KEEP


_OPTION_ACTIONS: Mapping[ProfileOption, Action] = {
    _X: Action.REMOVE,
    _Z: Action.EMPTY,
    _D: Action.DUMMY,
}


def _first_of(options: frozenset[ProfileOption], *preference: ProfileOption) -> Action:
    for option in preference:
        if option in options:
            return _OPTION_ACTIONS[option]
    return Action.REMOVE
