"""The DICOM JSON Model (PS3.18 Annex F): attribute names, elements with their VRs, datasets.

An attribute set is a ``dict`` from the tag's eight upper-case hex digits to its JSON element
(``{"vr": ..., "Value": [...]}``), exactly what ``pydicom.Dataset.to_json_dict`` produces, so
headers read from stored files and values built from database rows merge freely.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from control.errors import InvalidInputError

__all__ = ["Attributes", "attribute", "element", "resolve_tag", "tag_key", "vr_of"]

Attributes = dict[str, dict[str, Any]]
"""A DICOM JSON dataset: tag (``GGGGEEEE``) -> element."""

_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_NUMBER_VRS = frozenset({"US", "UL", "SS", "SL", "FL", "FD", "SV", "UV"})


def tag_key(tag: int) -> str:
    """The DICOM JSON name of ``tag``: eight upper-case hex digits."""
    return f"{tag:08X}"


def resolve_tag(name: str) -> int:
    """The tag a query names by keyword (``StudyDate``) or hex digits (``00080020``).

    Raises ``400 unknown_attribute`` for anything else (the name is quoted back, trimmed).
    """
    if _HEX_TAG.match(name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise InvalidInputError(
            f"{name[:64]!r} is neither a DICOM keyword nor a tag (8 hex digits)",
            code="unknown_attribute",
            detail={"attribute": name[:64]},
        )
    return int(tag)


def vr_of(tag: int) -> str:
    """The tag's VR from the data dictionary (``UN`` for private or unknown tags; the first of
    a choice such as ``US or SS``)."""
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def element(tag: int, *values: object) -> dict[str, Any]:
    """The JSON element of ``tag`` holding ``values`` (none: present and empty).

    PN values become ``{"Alphabetic": ...}``; IS values integers; numbers stay numbers;
    anything else its text.
    """
    vr = vr_of(tag)
    result: dict[str, Any] = {"vr": vr}
    present = [value for value in values if value is not None and value != ""]
    if not present:
        return result
    if vr == "PN":
        result["Value"] = [{"Alphabetic": str(value)} for value in present]
    elif vr == "IS":
        result["Value"] = [int(str(value)) for value in present]
    elif vr in _NUMBER_VRS or vr == "DS":
        result["Value"] = [
            value if isinstance(value, int | float) else float(str(value)) for value in present
        ]
    else:
        result["Value"] = [str(value) for value in present]
    return result


def attribute(tag_name: str, *values: object) -> tuple[str, dict[str, Any]]:
    """``(tag_key, element)`` for the keyword ``tag_name`` (a programming error if unknown)."""
    tag = tag_for_keyword(tag_name)
    if tag is None:
        raise KeyError(tag_name)
    return tag_key(int(tag)), element(int(tag), *values)
