"""Object store on S3 (MinIO, AWS, moto) through the sync ``minio`` SDK run in worker threads.

Each object carries its SHA-256 as user metadata ``sha256`` (``x-amz-meta-sha256``), written
in the same PUT as the bytes, so S3's atomic PUT commits both together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TypeVar

import anyio
import anyio.to_thread
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from control.errors import NotFoundError
from control.storage.base import (
    NewObject,
    StorageUnavailableError,
    StoredObject,
    sha256_hex,
    validate_key,
    verify_checksum,
)

_T = TypeVar("_T")
_SHA256_HEADER = "x-amz-meta-sha256"
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject"})
_EXISTING_BUCKET_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class S3Store:
    """An :class:`~control.storage.base.ObjectStore` on one S3 bucket, created on first use.

    ``endpoint`` is ``host:port`` without a scheme; ``secure`` selects HTTPS. Every request
    gives up after ``connect_timeout_s`` to connect, ``read_timeout_s`` between bytes and
    ``retries`` retries; network and server failures raise ``StorageUnavailableError``.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = "us-east-1",
        secure: bool = False,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        retries: int = 2,
    ) -> None:
        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=urllib3.Retry(
                total=retries, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
            maxsize=16,
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http_client,
        )
        self._bucket = bucket
        self._region = region
        self._bucket_ready = False
        self._bucket_lock = anyio.Lock()

    @property
    def bucket(self) -> str:
        """The bucket holding the objects."""
        return self._bucket

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        sha256: str | None = None,
    ) -> StoredObject:
        """Upload ``data`` with its SHA-256 as metadata in one atomic PUT."""
        validate_key(key)
        digest = sha256 or sha256_hex(data)
        await self._ensure_bucket()
        await self._call(
            partial(
                self._client.put_object,
                self._bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={"sha256": digest},
            )
        )
        return StoredObject(key=key, sha256=digest, size=len(data))

    async def put_many(self, objects: Sequence[NewObject]) -> list[StoredObject]:
        """One PUT per object (each is durable when S3 answers it); a HEAD first tells which
        keys already held one. On failure the objects this call created are deleted."""
        stored: list[StoredObject] = []
        try:
            for item in objects:
                replaced = await self.exists(item.key)
                done = await self.put(
                    item.key, item.data, content_type=item.content_type, sha256=item.sha256
                )
                stored.append(dataclasses.replace(done, replaced=replaced))
        except BaseException:
            for done in stored:
                if not done.replaced:
                    with contextlib.suppress(Exception):
                        await self.delete(done.key)
            raise
        return stored

    async def get(self, key: str, *, expected_sha256: str | None = None) -> bytes:
        """The verified bytes under ``key``; the hash comes from the same GET response."""
        validate_key(key)
        await self._ensure_bucket()
        try:
            data, recorded = await self._call(partial(self._get_sync, key))
        except S3Error as exc:
            raise NotFoundError(
                f"no object stored under {key!r}", code="object_not_found", detail={"key": key}
            ) from exc
        verify_checksum(key, data, recorded, expected_sha256)
        return data

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key`` (a HEAD request)."""
        validate_key(key)
        await self._ensure_bucket()
        try:
            await self._call(partial(self._client.stat_object, self._bucket, key))
        except S3Error:
            return False
        return True

    async def delete(self, key: str) -> None:
        """Remove the object under ``key``; S3 DELETE of an absent key succeeds."""
        validate_key(key)
        await self._ensure_bucket()
        await self._call(partial(self._client.remove_object, self._bucket, key))

    async def modified_at(self, key: str) -> datetime | None:
        """The object's Last-Modified time (a HEAD request), or None when absent."""
        validate_key(key)
        await self._ensure_bucket()
        try:
            stat = await self._call(partial(self._client.stat_object, self._bucket, key))
        except S3Error:
            return None
        return stat.last_modified

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix``."""
        await self._ensure_bucket()
        return await self._call(partial(self._list_sync, prefix))

    async def ping(self) -> None:
        """Reach the server and make sure the bucket exists (creating it if needed)."""
        await self._call(self._ensure_bucket_sync)
        self._bucket_ready = True

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        async with self._bucket_lock:
            if not self._bucket_ready:
                await self._call(self._ensure_bucket_sync)
                self._bucket_ready = True

    def _ensure_bucket_sync(self) -> None:
        if self._client.bucket_exists(self._bucket):
            return
        try:
            self._client.make_bucket(self._bucket, location=self._region)
        except S3Error as exc:
            if exc.code not in _EXISTING_BUCKET_CODES:
                raise

    def _get_sync(self, key: str) -> tuple[bytes, str | None]:
        response = self._client.get_object(self._bucket, key)
        try:
            return response.read(), response.headers.get(_SHA256_HEADER)
        finally:
            response.close()
            response.release_conn()

    def _list_sync(self, prefix: str) -> list[str]:
        objects = self._client.list_objects(self._bucket, prefix=prefix or None, recursive=True)
        return sorted(obj.object_name for obj in objects if obj.object_name is not None)

    async def _call(self, func: Callable[[], _T]) -> _T:
        """Run one blocking SDK call in a thread.

        A missing object propagates as ``S3Error`` for the caller to interpret; every other
        SDK or network failure becomes ``StorageUnavailableError``.
        """
        try:
            return await anyio.to_thread.run_sync(func)
        except S3Error as exc:
            if exc.code in _MISSING_OBJECT_CODES:
                raise
            raise StorageUnavailableError(
                f"S3 bucket {self._bucket!r} refused the request: {exc.code}",
                detail={"s3_code": exc.code},
            ) from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise StorageUnavailableError(
                f"S3 endpoint for bucket {self._bucket!r} is unreachable ({type(exc).__name__})"
            ) from exc
