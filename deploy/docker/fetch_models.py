"""Copy a Triton model repository (or some of its files) from the model store into a folder.

Usage: ``fetch_models.py [--only NAME] s3://bucket/prefix TARGET``. Every object under the
prefix lands at its relative path under TARGET, replacing what is there (the store wins over
the image's committed placeholders); ``--only drift_reference.json`` copies just the files
of that name (what the control plane reads for drift). The store is S3 or MinIO, reached
with boto3 where installed (the Triton image) or else the ``minio`` client (the control
image, where it is a dependency). Credentials, region and endpoint come from the standard
variables: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ENDPOINT_URL`` (MinIO: ``http://minio:9000``), or web identity (IRSA) / an instance
profile.

Runs in NVIDIA's Triton image (Python 3.10) and the control image: standard library plus
one of the two clients.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlparse


class Store(Protocol):
    def keys(self, bucket: str, prefix: str) -> Iterator[str]: ...

    def download(self, bucket: str, key: str, path: Path) -> None: ...


class Boto3Store:
    """The model store through a boto3 S3 client."""

    def __init__(self, client: object) -> None:
        self.client = client

    def keys(self, bucket: str, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def download(self, bucket: str, key: str, path: Path) -> None:
        self.client.download_file(bucket, key, str(path))  # type: ignore[attr-defined]


class MinioStore:
    """The model store through a ``minio.Minio`` client."""

    def __init__(self, client: object) -> None:
        self.client = client

    def keys(self, bucket: str, prefix: str) -> Iterator[str]:
        for item in self.client.list_objects(bucket, prefix=prefix, recursive=True):  # type: ignore[attr-defined]
            yield item.object_name

    def download(self, bucket: str, key: str, path: Path) -> None:
        self.client.fget_object(bucket, key, str(path))  # type: ignore[attr-defined]


def parse_store_uri(uri: str) -> tuple[str, str]:
    """The bucket and key prefix (no leading slash, ``/``-terminated or empty) of an s3:// URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"model store must be s3://bucket[/prefix], got {uri!r}")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


def local_path(target: Path, prefix: str, key: str) -> Path | None:
    """Where object ``key`` goes under ``target``; None for folder markers. Refuses keys that
    would escape ``target`` (``..``, absolute parts)."""
    relative = key[len(prefix) :]
    if not relative or relative.endswith("/"):
        return None
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or any(part in ("..", ".", "") for part in parts):
        raise ValueError(f"refusing object key outside the repository: {key!r}")
    return target.joinpath(*parts)


def fetch(
    store: Store, uri: str, target: Path, only: str | None = None, allow_empty: bool = False
) -> list[Path]:
    """Download every object under ``uri`` (named ``only``, if given) into ``target``; the
    written paths, sorted. An empty result is an error (nothing to serve) unless
    ``allow_empty``."""
    bucket, prefix = parse_store_uri(uri)
    written = []
    for key in store.keys(bucket, prefix):
        path = local_path(target, prefix, key)
        if path is None or (only is not None and path.name != only):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        store.download(bucket, key, partial)
        partial.replace(path)
        written.append(path)
    if not written and not allow_empty:
        what = f"no {only} files" if only else "no objects"
        raise SystemExit(f"model store {uri} holds {what}: nothing to serve from it")
    return sorted(written)


def store_from_environment() -> Store:
    """A client for the store from the standard AWS_* variables: boto3 when importable
    (it reads them itself), else minio."""
    try:
        import boto3
    except ImportError:
        pass
    else:
        return Boto3Store(boto3.client("s3"))
    from minio import Minio
    from minio.credentials import ChainedProvider, EnvAWSProvider, IamAwsProvider

    endpoint = urlparse(os.environ.get("AWS_ENDPOINT_URL") or "https://s3.amazonaws.com")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    credentials = ChainedProvider([EnvAWSProvider(), IamAwsProvider()])
    client = Minio(
        endpoint.netloc,
        secure=endpoint.scheme == "https",
        region=region,
        credentials=credentials,
    )
    return MinioStore(client)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("uri", help="s3://bucket/prefix of a Triton model repository")
    parser.add_argument("target", type=Path, help="folder to write into")
    parser.add_argument("--only", help="copy only the files of this name")
    parser.add_argument(
        "--allow-empty", action="store_true", help="finding nothing is not an error"
    )
    args = parser.parse_args(argv)
    args.target.mkdir(parents=True, exist_ok=True)
    written = fetch(store_from_environment(), args.uri, args.target, args.only, args.allow_empty)
    models = sorted({path.relative_to(args.target).parts[0] for path in written})
    print(f"fetched {len(written)} files from {args.uri}: {', '.join(models)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
