"""Object store on a local directory: one file per key, SHA-256 embedded in a fixed header.

Each object file is ``MVOBJ1 <64 hex sha256>\\n`` followed by the object's bytes. Keeping the
hash inside the file means one ``os.replace`` commits bytes and hash together, so a reader
can never pair new bytes with an old hash. Writes go to a temporary file in the target
directory (its name holds ``~``, which keys cannot, so it never shows up as a key), are
fsynced, renamed over the target and the directory is fsynced.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread

from control.errors import ConflictError, NotFoundError
from control.storage.base import (
    NewObject,
    StorageUnavailableError,
    StoredObject,
    is_valid_key,
    sha256_hex,
    validate_key,
    verify_checksum,
)

_MAGIC = b"MVOBJ1 "
_HEADER_LENGTH = len(_MAGIC) + 64 + 1
_HEADER = re.compile(rb"MVOBJ1 ([0-9a-f]{64})\n")
_TEMP_PREFIX = ".put~"


class FilesystemStore:
    """An :class:`~control.storage.base.ObjectStore` rooted at ``root`` (created on demand).

    A key may not be both an object and the prefix directory of another object
    (``a/b`` and ``a/b/c``); such a ``put`` raises ``ConflictError`` (``key_conflict``).
    ``content_type`` is accepted for interface parity and not recorded.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        """The directory holding the objects."""
        return self._root

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        sha256: str | None = None,
    ) -> StoredObject:
        """Write ``data`` under ``key`` atomically and durably; see ``ObjectStore.put``."""
        path = self._path(key)
        return await anyio.to_thread.run_sync(self._put_sync, key, path, data, sha256)

    async def put_many(self, objects: Sequence[NewObject]) -> list[StoredObject]:
        """Write every object durably; see ``ObjectStore.put_many``.

        Each object goes to a temporary file that is fsynced; then all are renamed into
        place and each directory that received one is fsynced once. A failure before the
        renames leaves nothing; one during them removes the objects this call created.
        """
        paths = [self._path(item.key) for item in objects]
        return await anyio.to_thread.run_sync(self._put_many_sync, list(objects), paths)

    async def get(self, key: str, *, expected_sha256: str | None = None) -> bytes:
        """The verified bytes under ``key``; see ``ObjectStore.get``."""
        path = self._path(key)
        blob = await anyio.to_thread.run_sync(_read_object, key, path)
        match = _HEADER.match(blob[:_HEADER_LENGTH])
        recorded = match.group(1).decode() if match else None
        data = blob[_HEADER_LENGTH:] if match else blob
        verify_checksum(key, data, recorded, expected_sha256)
        return data

    async def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        path = self._path(key)
        return await anyio.to_thread.run_sync(path.is_file)

    async def delete(self, key: str) -> None:
        """Remove the file under ``key`` if present."""
        path = self._path(key)
        await anyio.to_thread.run_sync(_unlink_if_present, path)

    async def modified_at(self, key: str) -> datetime | None:
        """The file's modification time, or None when no object is stored under ``key``."""
        path = self._path(key)
        return await anyio.to_thread.run_sync(_modified_at, path)

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix``; temporary files are never listed."""
        return await anyio.to_thread.run_sync(self._list_sync, prefix)

    async def ping(self) -> None:
        """Create the root if needed and check it is a writable directory."""
        await anyio.to_thread.run_sync(self._ping_sync)

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*validate_key(key).split("/"))

    def _put_sync(self, key: str, path: Path, data: bytes, sha256: str | None) -> StoredObject:
        digest = sha256 or sha256_hex(data)
        temp = _write_temporary(key, path, data, digest)
        try:
            os.replace(temp, path)
        except IsADirectoryError as exc:
            _unlink_if_present(temp)
            raise _key_conflict(key) from exc
        except BaseException:
            _unlink_if_present(temp)
            raise
        _fsync_directory(path.parent)
        return StoredObject(key=key, sha256=digest, size=len(data))

    def _put_many_sync(self, objects: list[NewObject], paths: list[Path]) -> list[StoredObject]:
        temps: list[Path] = []
        digests = [item.sha256 or sha256_hex(item.data) for item in objects]
        try:
            for item, path, digest in zip(objects, paths, digests, strict=True):
                temps.append(_write_temporary(item.key, path, item.data, digest))
        except BaseException:
            for temp in temps:
                _unlink_if_present(temp)
            raise
        stored: list[StoredObject] = []
        created: list[Path] = []
        try:
            for item, path, temp, digest in zip(objects, paths, temps, digests, strict=True):
                replaced = path.is_file()
                try:
                    os.replace(temp, path)
                except IsADirectoryError as exc:
                    raise _key_conflict(item.key) from exc
                if not replaced:
                    created.append(path)
                stored.append(StoredObject(item.key, digest, len(item.data), replaced))
        except BaseException:
            for temp in temps:
                _unlink_if_present(temp)
            for path in created:
                _unlink_if_present(path)
            raise
        for directory in dict.fromkeys(path.parent for path in paths):
            _fsync_directory(directory)
        return stored

    def _list_sync(self, prefix: str) -> list[str]:
        start = self._root
        if "/" in prefix:
            directory = prefix.rsplit("/", 1)[0]
            if not is_valid_key(directory):
                return []
            start = self._root.joinpath(*directory.split("/"))
        keys = []
        for dirpath, _, filenames in os.walk(start):
            for name in filenames:
                key = (Path(dirpath) / name).relative_to(self._root).as_posix()
                if key.startswith(prefix) and is_valid_key(key):
                    keys.append(key)
        return sorted(keys)

    def _ping_sync(self) -> None:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailableError(
                f"object store root {self._root} cannot be created: {exc}"
            ) from exc
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise StorageUnavailableError(f"object store root {self._root} is not writable")


def _write_temporary(key: str, path: Path, data: bytes, digest: str) -> Path:
    """``data`` with its header in a new fsynced temporary file beside ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
    except (FileExistsError, NotADirectoryError) as exc:
        raise _key_conflict(key) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_MAGIC + digest.encode() + b"\n")
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _unlink_if_present(Path(temp_name))
        raise
    return Path(temp_name)


def _read_object(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise NotFoundError(
            f"no object stored under {key!r}", code="object_not_found", detail={"key": key}
        ) from exc


def _modified_at(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _unlink_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
        path.unlink()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _key_conflict(key: str) -> ConflictError:
    return ConflictError(
        f"object key {key!r} collides with an existing object or key prefix",
        code="key_conflict",
        detail={"key": key},
    )
