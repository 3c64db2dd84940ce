"""One behavioural suite run against both object stores, plus backend-specific checks."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from control.config import Settings
from control.errors import ConflictError, NotFoundError, StorageIntegrityError
from control.storage import (
    FilesystemStore,
    NewObject,
    ObjectStore,
    S3Store,
    StorageUnavailableError,
    StoredObject,
    build_store,
    instance_key,
)
from control.storage import filesystem as filesystem_module
from control.storage.base import sha256_hex
from tests.fixtures import s3server
from tests.fixtures.s3server import S3Server, free_loopback_port

s3_server = s3server.s3_server

KEY = "studies/1.2.3/series/4.5/instances/6.7.dcm"
PAYLOAD = b"DICM" + bytes(range(256)) * 64

BAD_KEYS = [
    "",
    "/abs",
    "a//b",
    "a/",
    "../x",
    "a/../b",
    "a/./b",
    "..",
    "a b",
    "a\\b",
    "a~b",
    "caf\u00e9",
    "x" * 1025,
    "a/" + "y" * 256,
]


@dataclass
class Backend:
    """A store under test plus a way to swap its bytes behind its back, keeping the old hash."""

    store: ObjectStore
    replace_bytes_keep_hash: Callable[[str, bytes], Awaitable[None]]


def _filesystem_backend(root: Path) -> Backend:
    async def replace(key: str, data: bytes) -> None:
        path = root / key
        header = path.read_bytes()[:72]
        path.write_bytes(header + data)

    return Backend(FilesystemStore(root), replace)


def _s3_backend(server: S3Server) -> Backend:
    bucket = server.unique_bucket()
    client = server.client()

    async def replace(key: str, data: bytes) -> None:
        metadata = client.stat_object(bucket, key).metadata
        assert metadata is not None
        stale = metadata["x-amz-meta-sha256"]
        client.put_object(bucket, key, io.BytesIO(data), len(data), metadata={"sha256": stale})

    store = S3Store(
        server.endpoint,
        server.access_key,
        server.secret_key,
        bucket,
        region=server.region,
        connect_timeout_s=2,
        # The product default. moto answers 500 to a GET that races an overwrite of the same
        # key (it closes the old object's buffer under the reader); a retry reads the new one.
        retries=2,
    )
    return Backend(store, replace)


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "filesystem":
        return _filesystem_backend(tmp_path / "objects")
    return _s3_backend(request.getfixturevalue("s3_server"))


@pytest.fixture
def store(backend: Backend) -> ObjectStore:
    return backend.store


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "objects")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("MEDVISION_"):
            monkeypatch.delenv(name)
    yield


# --- the shared contract -------------------------------------------------------------------


async def test_round_trip_records_sha256_and_size(store: ObjectStore) -> None:
    stored = await store.put(KEY, PAYLOAD, content_type="application/dicom")

    assert stored == StoredObject(key=KEY, sha256=sha256_hex(PAYLOAD), size=len(PAYLOAD))
    assert await store.exists(KEY)
    assert await store.get(KEY) == PAYLOAD


async def test_empty_object_round_trip(store: ObjectStore) -> None:
    stored = await store.put("empty.bin", b"")

    assert stored.size == 0
    assert await store.get("empty.bin", expected_sha256=sha256_hex(b"")) == b""


async def test_expected_sha256_is_checked(store: ObjectStore) -> None:
    await store.put(KEY, PAYLOAD)

    assert await store.get(KEY, expected_sha256=sha256_hex(PAYLOAD).upper()) == PAYLOAD
    with pytest.raises(StorageIntegrityError) as caught:
        await store.get(KEY, expected_sha256=sha256_hex(b"something else"))
    assert caught.value.code == "checksum_mismatch"
    assert caught.value.detail["actual"] == sha256_hex(PAYLOAD)


async def test_put_identical_bytes_twice_is_idempotent(store: ObjectStore) -> None:
    first = await store.put(KEY, PAYLOAD)
    second = await store.put(KEY, PAYLOAD)

    assert first == second
    assert await store.list_keys() == [KEY]
    assert await store.get(KEY, expected_sha256=first.sha256) == PAYLOAD


async def test_overwrite_replaces_bytes_and_hash(store: ObjectStore) -> None:
    await store.put(KEY, PAYLOAD)
    stored = await store.put(KEY, b"second version")

    assert stored.sha256 == sha256_hex(b"second version")
    assert await store.get(KEY, expected_sha256=stored.sha256) == b"second version"


async def test_out_of_band_bytes_with_stale_hash_are_detected(backend: Backend) -> None:
    await backend.store.put(KEY, PAYLOAD)
    await backend.replace_bytes_keep_hash(KEY, b"swapped behind the store's back")

    with pytest.raises(StorageIntegrityError) as caught:
        await backend.store.get(KEY)
    assert caught.value.code == "checksum_mismatch"
    assert caught.value.detail["recorded"] == sha256_hex(PAYLOAD)


async def test_missing_key_raises_not_found(store: ObjectStore) -> None:
    assert not await store.exists(KEY)
    with pytest.raises(NotFoundError) as caught:
        await store.get(KEY)
    assert caught.value.code == "object_not_found"
    assert caught.value.detail == {"key": KEY}


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put(KEY, PAYLOAD)

    await store.delete(KEY)
    await store.delete(KEY)

    assert not await store.exists(KEY)
    assert await store.list_keys() == []


async def test_list_keys_filters_by_string_prefix(store: ObjectStore) -> None:
    keys = [
        "studies/1/series/a/instances/x.dcm",
        "studies/1/series/b/instances/y.dcm",
        "studies/10/series/c/instances/z.dcm",
        "exports/report.json",
    ]
    for key in reversed(keys):
        await store.put(key, key.encode())

    assert await store.list_keys() == sorted(keys)
    assert await store.list_keys("studies/1/") == keys[:2]
    assert await store.list_keys("studies/1") == keys[:3]
    assert await store.list_keys("studies/1/series/b") == [keys[1]]
    assert await store.list_keys("exp") == [keys[3]]
    assert await store.list_keys("nothing/") == []
    assert await store.list_keys("../") == []


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        await store.put(key, b"x")
    with pytest.raises(ValueError):
        await store.get(key)
    with pytest.raises(ValueError):
        await store.exists(key)
    with pytest.raises(ValueError):
        await store.delete(key)


async def test_ping_succeeds_on_a_usable_store(store: ObjectStore) -> None:
    await store.ping()


async def test_concurrent_readers_never_see_a_partial_object(store: ObjectStore) -> None:
    versions = [bytes([value]) * 512 * 1024 for value in (1, 2)]
    await store.put(KEY, versions[0])
    seen: set[bytes] = set()

    async def overwrite() -> None:
        for round_ in range(20):
            await store.put(KEY, versions[round_ % 2])

    async def read() -> None:
        for _ in range(20):
            seen.add(await store.get(KEY))

    async with anyio.create_task_group() as group:
        group.start_soon(overwrite)
        for _ in range(3):
            group.start_soon(read)

    assert seen <= set(versions)


# --- filesystem specifics ------------------------------------------------------------------


async def test_filesystem_detects_bytes_flipped_on_disk(fs_store: FilesystemStore) -> None:
    await fs_store.put(KEY, PAYLOAD)
    path = fs_store.root / KEY
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))

    with pytest.raises(StorageIntegrityError) as caught:
        await fs_store.get(KEY)
    assert caught.value.code == "checksum_mismatch"


async def test_filesystem_file_without_recorded_hash_is_rejected(
    fs_store: FilesystemStore,
) -> None:
    path = fs_store.root / "raw.dcm"
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD)

    with pytest.raises(StorageIntegrityError) as caught:
        await fs_store.get("raw.dcm")
    assert caught.value.code == "checksum_missing"


async def test_put_many_stores_each_and_says_which_keys_it_replaced(store: ObjectStore) -> None:
    await store.put("studies/a/1.dcm", b"old")
    objects = [
        NewObject("studies/a/1.dcm", b"one", "application/dicom"),
        NewObject("studies/a/2.dcm", b"two", "application/dicom", sha256_hex(b"two")),
        NewObject("studies/b/3.dcm", b""),
    ]

    stored = await store.put_many(objects)

    assert stored == [
        StoredObject("studies/a/1.dcm", sha256_hex(b"one"), 3, replaced=True),
        StoredObject("studies/a/2.dcm", sha256_hex(b"two"), 3, replaced=False),
        StoredObject("studies/b/3.dcm", sha256_hex(b""), 0, replaced=False),
    ]
    assert [await store.get(item.key, expected_sha256=item.sha256) for item in stored] == [
        b"one",
        b"two",
        b"",
    ]
    assert await store.put_many([]) == []


async def test_a_wrong_caller_digest_is_caught_on_read(store: ObjectStore) -> None:
    """The digest a caller passes is recorded as given: a wrong one never goes unnoticed."""
    await store.put(KEY, PAYLOAD, sha256=sha256_hex(b"something else"))

    with pytest.raises(StorageIntegrityError) as caught:
        await store.get(KEY)
    assert caught.value.code == "checksum_mismatch"


async def test_filesystem_put_many_fsyncs_each_file_and_each_directory_once(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    keys = [f"studies/s/series/x/instances/{n}.dcm" for n in range(5)] + ["studies/t/9.dcm"]

    await fs_store.put_many([NewObject(key, key.encode()) for key in keys])

    directories = {
        str(fs_store.root / "studies/s/series/x/instances"),
        str(fs_store.root / "studies/t"),
    }
    assert sorted(path for path in synced if path in directories) == sorted(directories)
    assert len(synced) == len(keys) + len(directories)  # one per file (its temp name), one per dir
    assert [await fs_store.get(key) for key in keys] == [key.encode() for key in keys]


async def test_filesystem_put_many_failing_half_way_leaves_nothing_new(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fs_store.put("studies/a/0.dcm", b"kept")
    real_replace = os.replace
    renamed: list[str] = []

    def crash_on_third(src: str, dst: str) -> None:
        if len(renamed) == 2:
            raise OSError("simulated failure during the renames")
        renamed.append(str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_third)
    objects = [NewObject(f"studies/a/{n}.dcm", b"new %d" % n) for n in range(4)]

    with pytest.raises(OSError, match="simulated failure"):
        await fs_store.put_many(objects)

    assert await fs_store.list_keys() == ["studies/a/0.dcm"]  # 1.dcm, renamed, removed again
    assert await fs_store.get("studies/a/0.dcm") == b"new 0"  # replaced, as documented
    assert [p.name for p in fs_store.root.rglob("*") if p.is_file()] == ["0.dcm"]


async def test_filesystem_failed_replace_leaves_no_object_and_no_temp_file(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        await fs_store.put(KEY, PAYLOAD)

    assert not await fs_store.exists(KEY)
    assert await fs_store.list_keys() == []
    assert [p for p in fs_store.root.rglob("*") if p.is_file()] == []


async def test_filesystem_crash_mid_overwrite_keeps_old_object_and_hides_temp_file(
    fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fs_store.put(KEY, b"version one")

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setattr(filesystem_module, "_unlink_if_present", lambda path: None)
    with pytest.raises(OSError, match="simulated crash"):
        await fs_store.put(KEY, b"version two")
    with pytest.raises(OSError, match="simulated crash"):
        await fs_store.put("studies/other.dcm", b"never committed")

    leftovers = [p for p in fs_store.root.rglob("*") if p.is_file() and p.name != "6.7.dcm"]
    assert len(leftovers) == 2
    assert await fs_store.get(KEY) == b"version one"
    assert not await fs_store.exists("studies/other.dcm")
    assert await fs_store.list_keys() == [KEY]


async def test_filesystem_key_cannot_be_object_and_prefix(fs_store: FilesystemStore) -> None:
    await fs_store.put("a/b", b"object")
    with pytest.raises(ConflictError) as caught:
        await fs_store.put("a/b/c", b"nested")
    assert caught.value.code == "key_conflict"

    await fs_store.put("x/y/z", b"nested")
    with pytest.raises(ConflictError):
        await fs_store.put("x/y", b"object")

    assert await fs_store.list_keys() == ["a/b", "x/y/z"]
    assert not await fs_store.exists("x/y")
    with pytest.raises(NotFoundError):
        await fs_store.get("x/y")
    await fs_store.delete("x/y")
    assert await fs_store.get("x/y/z") == b"nested"


async def test_filesystem_ping_creates_root(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "not" / "yet")
    await store.ping()
    assert store.root.is_dir()


async def test_filesystem_ping_fails_when_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    root.write_bytes(b"")
    with pytest.raises(StorageUnavailableError):
        await FilesystemStore(root).ping()


# --- S3 specifics --------------------------------------------------------------------------


@pytest.mark.s3
async def test_s3_records_sha256_metadata_and_creates_bucket(s3_server: S3Server) -> None:
    backend = _s3_backend(s3_server)
    store = backend.store
    assert isinstance(store, S3Store)
    client = s3_server.client()
    assert not client.bucket_exists(store.bucket)

    stored = await store.put(KEY, PAYLOAD, content_type="application/dicom")

    stat = client.stat_object(store.bucket, KEY)
    assert stat.metadata is not None
    assert stat.metadata["x-amz-meta-sha256"] == stored.sha256
    assert stat.content_type == "application/dicom"


@pytest.mark.s3
async def test_s3_object_without_sha256_metadata_is_rejected(s3_server: S3Server) -> None:
    store = _s3_backend(s3_server).store
    assert isinstance(store, S3Store)
    await store.ping()
    s3_server.client().put_object(store.bucket, KEY, io.BytesIO(PAYLOAD), len(PAYLOAD))

    with pytest.raises(StorageIntegrityError) as caught:
        await store.get(KEY)
    assert caught.value.code == "checksum_missing"


async def test_s3_unreachable_endpoint_fails_fast() -> None:
    store = S3Store(
        f"127.0.0.1:{free_loopback_port()}",
        "key",
        "secret",
        "medvision",
        connect_timeout_s=0.5,
        retries=0,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as caught:
        await store.ping()
    with pytest.raises(StorageUnavailableError):
        await store.get(KEY)

    assert time.monotonic() - started < 5
    assert caught.value.status_code == 503


# --- keys and construction -----------------------------------------------------------------


def test_instance_key_layout() -> None:
    assert instance_key("1.2.840.1", "1.2.840.2", "1.2.840.3") == (
        "studies/1.2.840.1/series/1.2.840.2/instances/1.2.840.3.dcm"
    )
    assert instance_key("s", "e", "i", suffix="nii.gz").endswith("/instances/i.nii.gz")


@pytest.mark.parametrize(
    ("study", "series", "instance", "suffix"),
    [
        ("..", "1", "2", "dcm"),
        ("1/../..", "1", "2", "dcm"),
        ("1", "", "2", "dcm"),
        ("1", "2", "3 4", "dcm"),
        ("1", "2", "3", "dcm/x"),
        ("1", "2", "3", "."),
        ("1", "2", "/etc/passwd", "dcm"),
    ],
)
def test_instance_key_rejects_unsafe_parts(
    study: str, series: str, instance: str, suffix: str
) -> None:
    with pytest.raises(ValueError):
        instance_key(study, series, instance, suffix)


@pytest.mark.usefixtures("clean_env")
def test_build_store_defaults_to_filesystem_under_data_dir(tmp_path: Path) -> None:
    store = build_store(Settings(data_dir=tmp_path))

    assert isinstance(store, FilesystemStore)
    assert store.root == tmp_path / "objects"


@pytest.mark.s3
@pytest.mark.usefixtures("clean_env")
async def test_build_store_s3_from_settings_round_trips(s3_server: S3Server) -> None:
    settings = Settings(
        s3_endpoint=s3_server.url,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_bucket=s3_server.unique_bucket(),
        s3_secure=True,
    )
    store = build_store(settings)

    assert isinstance(store, S3Store)
    await store.put(KEY, PAYLOAD)
    assert await store.get(KEY) == PAYLOAD
