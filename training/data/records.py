"""What the dataset loaders produce: one record per image or case, and a report of skips.

Also the checked table reader the loaders share, which turns a missing file or column
into a :class:`DatasetError` naming the file and the column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from training.data.errors import DatasetError

# Marker file: a dataset folder holding it was generated, not acquired.
SYNTHETIC_MARKER = "SYNTHETIC"

ItemT = TypeVar("ItemT")
RecordT = TypeVar("RecordT")


@dataclass(frozen=True)
class Box:
    """A ground-truth box in ORIGINAL image pixel coordinates (top-left x, y; width, height)."""

    label: int
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class CxrRecord:
    """One chest X-ray: where it is, who it is, its 14 labels (CXR_LABELS order) and mask.

    ``mask[i] == 1`` when label ``i`` is known; 0 when unknown, uncertain-and-ignored or
    not provided by the source dataset.
    """

    image_path: Path
    image_id: str
    patient_id: str
    labels: np.ndarray
    mask: np.ndarray
    age: float | None
    sex: str | None
    race: str | None
    boxes: tuple[Box, ...] = ()
    synthetic: bool = False


@dataclass(frozen=True)
class BratsRecord:
    """One BraTS case: four channel files (T1, T1ce, T2, FLAIR) and its segmentation."""

    case_id: str
    channel_paths: tuple[Path, Path, Path, Path]
    seg_path: Path | None
    age: float | None = None
    sex: str | None = None
    race: str | None = None
    synthetic: bool = False


@dataclass
class LoadReport:
    """What a loader skipped under ``skip_bad=True``: one ``"file:row: reason"`` per skip."""

    skipped: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many rows, images or cases were skipped."""
        return len(self.skipped)

    def add(self, error: DatasetError) -> None:
        """Count ``error`` as one skipped item."""
        self.skipped.append(str(error))

    def skip_or_raise(self, error: DatasetError, skip_bad: bool) -> None:
        """Count ``error`` as a skip under ``skip_bad``; otherwise raise it."""
        if not skip_bad:
            raise error
        self.add(error)

    def read_each(
        self, items: Iterable[ItemT], read: Callable[[ItemT], RecordT], skip_bad: bool
    ) -> list[RecordT]:
        """``read`` of every item, in order; an item whose ``read`` raises DatasetError is
        skipped and counted under ``skip_bad`` (the error is raised otherwise)."""
        records = []
        for item in items:
            try:
                records.append(read(item))
            except DatasetError as error:
                self.skip_or_raise(error, skip_bad)
        return records


def is_synthetic(root: Path) -> bool:
    """Whether ``root`` carries the SYNTHETIC marker file."""
    return (root / SYNTHETIC_MARKER).is_file()


def read_table(path: Path, required: tuple[str, ...], *, sep: str = ",") -> pd.DataFrame:
    """Read a CSV/TSV as strings (blanks stay ``""``), headers stripped of spaces.

    Raises DatasetError naming ``path`` when the file is missing or unreadable, or naming
    the first required column that is absent.
    """
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"cannot parse table: {exc}") from exc
    table.columns = [str(column).strip() for column in table.columns]
    for column in required:
        if column not in table.columns:
            raise DatasetError(path, f"missing required column {column!r}")
    return table


def table_line(position: int) -> int:
    """The 1-based file line of the data row at 0-based ``position`` (line 1 is the header)."""
    return position + 2


def parse_optional_float(text: str, path: Path, row: int, column: str) -> float | None:
    """``text`` as a float, None when blank; DatasetError naming file, row and column otherwise."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise DatasetError(path, f"column {column!r}: not a number: {text!r}", row) from None


def normalise_sex(text: str) -> str | None:
    """ "M"/"F" from the spellings the datasets use (M, F, Male, Female); None otherwise."""
    value = text.strip().lower()
    if value in ("m", "male"):
        return "M"
    if value in ("f", "female"):
        return "F"
    return None
