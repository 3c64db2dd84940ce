"""The object store contract shared by every backend, plus key and checksum rules."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from control.errors import MedVisionError, StorageIntegrityError

MAX_KEY_LENGTH = 1024
_SEGMENT = re.compile(r"[0-9A-Za-z._-]{1,255}")


@dataclass(frozen=True)
class StoredObject:
    """What a successful ``put`` committed: the key, the hex SHA-256 of the bytes and their size.

    ``replaced`` (set by ``put_many``) tells whether an object was already stored under the key.
    """

    key: str
    sha256: str
    size: int
    replaced: bool = False


@dataclass(frozen=True)
class NewObject:
    """One object for ``ObjectStore.put_many``; ``sha256`` as for ``put``."""

    key: str
    data: bytes
    content_type: str = "application/octet-stream"
    sha256: str | None = None


class StorageUnavailableError(MedVisionError):
    """The object store cannot be reached or refuses to serve (network, permissions, disk)."""

    status_code = 503
    code = "storage_unavailable"


class ObjectStore(Protocol):
    """An async key → bytes store that records each object's SHA-256 at write time.

    Keys are ``/``-separated segments of ``[0-9A-Za-z._-]`` (see :func:`validate_key`).
    """

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        sha256: str | None = None,
    ) -> StoredObject:
        """Store ``data`` under ``key`` atomically: readers see the old object or the new one.

        Writing identical bytes to the same key again is idempotent. ``sha256`` is the
        caller's hex digest of ``data`` when it has one (the ingest hashes each object once);
        it is recorded as given, and every ``get`` still verifies the bytes against it.
        """
        ...

    async def put_many(self, objects: Sequence[NewObject]) -> list[StoredObject]:
        """Store several objects, each atomically as ``put`` does; all are durable on return.

        One call per request that stores many objects (a STOW-RS request, a C-STORE batch):
        the filesystem store makes the directory entries durable once per directory instead
        of once per object. On failure nothing it newly created stays behind; objects it
        replaced may hold the new bytes. The results say which keys already held an object.
        """
        ...

    async def get(self, key: str, *, expected_sha256: str | None = None) -> bytes:
        """The object's bytes, verified against the recorded SHA-256 and ``expected_sha256``.

        Raises ``NotFoundError`` (``object_not_found``) when absent and
        ``StorageIntegrityError`` (``checksum_mismatch``) when a hash differs.
        """
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object under ``key``; deleting an absent key is not an error."""
        ...

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Every stored key starting with ``prefix``, sorted."""
        ...

    async def modified_at(self, key: str) -> datetime | None:
        """When the object under ``key`` was last written (UTC), or None when absent."""
        ...

    async def ping(self) -> None:
        """Return when the store is usable; raise ``StorageUnavailableError`` otherwise."""
        ...


def is_valid_key(key: str) -> bool:
    """Whether ``key`` is a store key: non-empty ``/``-separated segments, no ``.`` or ``..``."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return False
    return all(
        _SEGMENT.fullmatch(segment) and segment not in {".", ".."} for segment in key.split("/")
    )


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if valid; raise ``ValueError`` naming the rule otherwise.

    Valid keys can never escape a filesystem root: no absolute paths, empty segments,
    ``.``/``..`` segments, or characters outside ``[0-9A-Za-z._-]``.
    """
    if not is_valid_key(key):
        raise ValueError(
            f"invalid object key {key!r}: expected '/'-separated segments of [0-9A-Za-z._-], "
            f"none of them '.' or '..', at most {MAX_KEY_LENGTH} characters"
        )
    return key


def instance_key(study_uid: str, series_uid: str, instance_uid: str, suffix: str = "dcm") -> str:
    """The key of one stored DICOM instance.

    Returns ``studies/<study>/series/<series>/instances/<instance>.<suffix>``; raises
    ``ValueError`` when any part is empty, ``.``/``..``, contains ``/`` or characters
    outside ``[0-9A-Za-z._-]``.
    """
    parts = {
        "study_uid": study_uid,
        "series_uid": series_uid,
        "instance_uid": instance_uid,
        "suffix": suffix,
    }
    for name, value in parts.items():
        if not _SEGMENT.fullmatch(value) or value in {".", ".."}:
            raise ValueError(f"invalid {name} {value!r}: expected [0-9A-Za-z._-], not '.' or '..'")
    return validate_key(
        f"studies/{study_uid}/series/{series_uid}/instances/{instance_uid}.{suffix}"
    )


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def verify_checksum(
    key: str, data: bytes, recorded_sha256: str | None, expected_sha256: str | None
) -> None:
    """Raise ``StorageIntegrityError`` unless ``data`` hashes to the recorded and expected values.

    ``checksum_missing`` when no hash was recorded for the object; ``checksum_mismatch`` when
    the bytes differ from the recorded hash or from ``expected_sha256`` (compared
    case-insensitively).
    """
    if recorded_sha256 is None:
        raise StorageIntegrityError(
            f"object {key!r} has no recorded SHA-256",
            code="checksum_missing",
            detail={"key": key},
        )
    actual = sha256_hex(data)
    for source, wanted in (("recorded", recorded_sha256), ("expected", expected_sha256)):
        if wanted is not None and wanted.lower() != actual:
            raise StorageIntegrityError(
                f"object {key!r} does not match its {source} SHA-256",
                code="checksum_mismatch",
                detail={"key": key, source: wanted.lower(), "actual": actual},
            )
