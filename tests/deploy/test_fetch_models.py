"""deploy/docker/fetch_models.py, the Triton image's model-store fetch, against moto's
in-memory S3: it copies a repository prefix, replaces placeholders, refuses keys that would
escape the target folder, and fails loudly on an empty store."""

from __future__ import annotations

import importlib.util

import pytest

from tests.deploy.conftest import DEPLOY

boto3 = pytest.importorskip("boto3", reason="boto3 (with moto, a dev dependency) not installed")
moto = pytest.importorskip("moto", reason="moto (dev dependency) not installed")

spec = importlib.util.spec_from_file_location("fetch_models", DEPLOY / "docker" / "fetch_models.py")
fetch_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch_models)

URI_CASES = [
    ("s3://models/model_repository", ("models", "model_repository/")),
    ("s3://models/a/b/", ("models", "a/b/")),
    ("s3://models", ("models", "")),
]


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="models")
        yield client


@pytest.mark.parametrize(("uri", "expected"), URI_CASES)
def test_parse_store_uri(uri, expected):
    assert fetch_models.parse_store_uri(uri) == expected


@pytest.mark.parametrize("uri", ["http://models/x", "s3:///x", "models/x"])
def test_parse_store_uri_refuses_other_schemes(uri):
    with pytest.raises(ValueError):
        fetch_models.parse_store_uri(uri)


def test_fetch_overlays_the_store_on_the_committed_folders(s3, tmp_path):
    committed = tmp_path / "cxr_preprocess" / "config.pbtxt"
    committed.parent.mkdir()
    committed.write_text("placeholder")
    objects = {
        "model_repository/cxr_net/config.pbtxt": b"name: 'cxr_net'",
        "model_repository/cxr_net/1/model.onnx": b"\x08\x07onnx",
        "model_repository/cxr_preprocess/config.pbtxt": b"exported",
        "model_repository/cxr_net/": b"",
        "elsewhere/ignored.txt": b"not under the prefix",
    }
    for key, body in objects.items():
        s3.put_object(Bucket="models", Key=key, Body=body)
    written = fetch_models.fetch(s3, "s3://models/model_repository", tmp_path)
    assert [path.relative_to(tmp_path).as_posix() for path in written] == [
        "cxr_net/1/model.onnx",
        "cxr_net/config.pbtxt",
        "cxr_preprocess/config.pbtxt",
    ]
    assert (tmp_path / "cxr_net" / "1" / "model.onnx").read_bytes() == b"\x08\x07onnx"
    assert committed.read_text() == "exported"
    assert not list(tmp_path.rglob("*.part")) and not (tmp_path / "ignored.txt").exists()


def test_fetch_refuses_keys_escaping_the_repository(s3, tmp_path):
    s3.put_object(Bucket="models", Key="model_repository/../../etc/evil", Body=b"x")
    with pytest.raises(ValueError, match="outside the repository"):
        fetch_models.fetch(s3, "s3://models/model_repository", tmp_path / "repo")
    assert not (tmp_path / "etc").exists()


def test_fetch_from_an_empty_store_fails(s3, tmp_path):
    with pytest.raises(SystemExit, match="holds no objects"):
        fetch_models.fetch(s3, "s3://models/model_repository", tmp_path)
