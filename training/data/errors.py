"""The one error a dataset loader raises for bad input: it names the file and the row."""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """Bad dataset input, located: ``str(error)`` is ``"path:row: reason"``.

    ``row`` is the 1-based line number in a text table (the header is line 1), or
    ``None`` when the problem is a whole file (an image, a volume, a missing column);
    the message is then ``"path: reason"``.
    """

    def __init__(self, path: Path | str, reason: str, row: int | None = None) -> None:
        self.path = Path(path)
        self.row = row
        self.reason = reason
        where = f"{self.path}:{row}" if row is not None else str(self.path)
        super().__init__(f"{where}: {reason}")
