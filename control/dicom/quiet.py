"""Keep identifying values that pydicom quotes in its diagnostics out of every log.

pydicom validates each value it reads and reports a bad one by quoting it, through the
``pydicom`` logger and as a ``UserWarning`` on stderr: "Invalid value for VR UI:
'1.2.04...'" carries the original Study/Series/SOP Instance UID of an upload from an older
device (leading-zero components, hex digits), before de-identification. So, once, for the
whole process (:func:`install`):

* pydicom's read-time validation is switched off (``reading_validation_mode = IGNORE``);
  :func:`invalid_value` does the same validation on MedVision's terms and returns only
  tag, VR and problem, which ``read_dicom`` logs as a bounded summary;
* every record of the ``pydicom`` logger is cut to a bounded summary without quoted values;
* ``UserWarning``s raised inside pydicom are not printed (they would repeat the record).

Settings are process-wide on purpose: a context manager around parsing would have to swap
global warning state from worker threads, which is not thread-safe.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydicom
import pydicom.config
from pydicom.valuerep import VALIDATORS

__all__ = ["MAX_REPORTED", "InvalidValue", "install", "invalid_value", "summarise"]

#: At most this many invalid elements are reported per file.
MAX_REPORTED = 10
_MAX_SUMMARY = 80
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


@dataclass(frozen=True)
class InvalidValue:
    """An element whose value breaks its VR's rules: where and what, never the value."""

    tag: str
    vr: str
    problem: str


def summarise(message: str) -> str:
    """A PHI-free, bounded form of a pydicom message: quoted values and details dropped."""
    head = _QUOTED.sub("<value>", message).split(":", 1)[0]
    return head.strip()[:_MAX_SUMMARY] or "pydicom diagnostic"


class _Redactor(logging.Filter):
    """Rewrites each ``pydicom`` log record to its :func:`summarise` form."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = summarise(record.getMessage())
        record.args = None
        return True


_installed = False


def install() -> None:
    """Apply the process-wide settings described in the module docstring (idempotent)."""
    global _installed
    if _installed:
        return
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").addFilter(_Redactor())
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    _installed = True


def invalid_value(element: pydicom.DataElement) -> InvalidValue | None:
    """Where and how ``element`` breaks its VR's rules (pydicom's validators), or None."""
    validator: Callable[[str, Any], tuple[bool, str]] | None = VALIDATORS.get(element.VR)
    if validator is None or element.VR in _BINARY_VRS or element.value is None:
        return None
    values = element.value if element.VM > 1 else [element.value]
    for value in values:
        # DS and IS values are read into numbers; their rules apply to the text they came
        # from (pydicom's validators refuse any number as "not a string").
        text = getattr(value, "original_string", None) if element.VR in ("DS", "IS") else None
        valid, _message = validator(element.VR, value if text is None else text)
        if not valid:
            return InvalidValue(_tag_text(element), element.VR, "invalid value")
    return None


def _tag_text(element: pydicom.DataElement) -> str:
    return f"({element.tag.group:04X},{element.tag.element:04X})"
