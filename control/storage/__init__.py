"""Object storage: one async interface, a filesystem and an S3 implementation."""

from __future__ import annotations

from urllib.parse import urlsplit

from control.config import Settings
from control.errors import ConfigurationError
from control.storage.base import (
    NewObject,
    ObjectStore,
    StorageUnavailableError,
    StoredObject,
    instance_key,
    is_valid_key,
    validate_key,
)
from control.storage.filesystem import FilesystemStore
from control.storage.s3 import S3Store

__all__ = [
    "FilesystemStore",
    "NewObject",
    "ObjectStore",
    "S3Store",
    "StorageUnavailableError",
    "StoredObject",
    "build_store",
    "instance_key",
    "is_valid_key",
    "validate_key",
]


def build_store(settings: Settings) -> ObjectStore:
    """The store ``settings.backend`` selects: files under ``storage_dir``, or the S3 bucket.

    ``MEDVISION_S3_ENDPOINT`` may be ``host:port`` (HTTPS per ``MEDVISION_S3_SECURE``) or a
    URL, whose ``http``/``https`` scheme then decides.
    """
    if settings.backend == "filesystem":
        return FilesystemStore(settings.storage_dir)
    endpoint, access_key, secret_key = (
        settings.s3_endpoint,
        settings.s3_access_key,
        settings.s3_secret_key,
    )
    if not (endpoint and access_key and secret_key):
        raise ConfigurationError(
            "S3 storage needs MEDVISION_S3_ENDPOINT, MEDVISION_S3_ACCESS_KEY "
            "and MEDVISION_S3_SECRET_KEY"
        )
    host, secure = _split_endpoint(endpoint, settings.s3_secure)
    return S3Store(
        host,
        access_key,
        secret_key,
        settings.s3_bucket,
        region=settings.s3_region,
        secure=secure,
    )


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    if "://" not in endpoint:
        return endpoint, secure
    parts = urlsplit(endpoint)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
        raise ConfigurationError(
            f"MEDVISION_S3_ENDPOINT must be host:port or http(s)://host:port, got {endpoint!r}"
        )
    return parts.netloc, parts.scheme == "https"
