"""Copy a Triton model repository from the model store (S3 or MinIO) into a local folder.

Usage: ``fetch_models.py s3://bucket/prefix /models``. Every object under the prefix lands at
its relative path under the folder, replacing what is there (the store wins over the image's
committed placeholders). Credentials, region and endpoint come from boto3's standard
sources: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ENDPOINT_URL`` (MinIO), web identity (IRSA) or an instance profile.

Runs inside NVIDIA's Triton image (its Python 3.10): standard library and boto3 only.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse


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
    if any(part in ("..", ".", "") for part in parts) or relative.startswith("/"):
        raise ValueError(f"refusing object key outside the repository: {key!r}")
    return target.joinpath(*parts)


def fetch(client: object, uri: str, target: Path) -> list[Path]:
    """Download every object under ``uri`` into ``target``; the written paths, sorted."""
    bucket, prefix = parse_store_uri(uri)
    written = []
    paginator = client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            path = local_path(target, prefix, item["Key"])
            if path is None:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".part")
            client.download_file(bucket, item["Key"], str(partial))  # type: ignore[attr-defined]
            partial.replace(path)
            written.append(path)
    if not written:
        raise SystemExit(f"model store {uri} holds no objects: nothing to serve from it")
    return sorted(written)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    import boto3

    uri, target = argv
    written = fetch(boto3.client("s3"), uri, Path(target))
    models = sorted({path.relative_to(target).parts[0] for path in written})
    print(f"fetched {len(written)} files from {uri}: {', '.join(models)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
