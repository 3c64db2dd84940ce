"""deploy/docker/fetch_models.py, the model-store fetch of the Triton image (boto3) and the
control image (minio), against a real S3 wire protocol (moto's server on loopback): it
copies a repository prefix, replaces placeholders, copies only named files on request,
refuses keys that would escape the target folder, and fails loudly on an empty store."""

from __future__ import annotations

import importlib.util
import socket
import sys

import pytest

from tests.deploy.conftest import DEPLOY

boto3 = pytest.importorskip("boto3", reason="boto3 (with moto, a dev dependency) not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] (dev dependency) missing")
minio = pytest.importorskip("minio")

spec = importlib.util.spec_from_file_location("fetch_models", DEPLOY / "docker" / "fetch_models.py")
fetch_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch_models)

URI_CASES = [
    ("s3://models/model_repository", ("models", "model_repository/")),
    ("s3://models/a/b/", ("models", "a/b/")),
    ("s3://models", ("models", "")),
]
OBJECTS = {
    "model_repository/cxr_net/config.pbtxt": b"name: 'cxr_net'",
    "model_repository/cxr_net/1/model.onnx": b"\x08\x07onnx",
    "model_repository/cxr_net/drift_reference.json": b'{"model_version": "3"}',
    "model_repository/cxr_preprocess/config.pbtxt": b"exported",
    "model_repository/cxr_net/": b"",
    "elsewhere/ignored.txt": b"not under the prefix",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"models-{_free_port()}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket


def _stores(client):
    endpoint = client.meta.endpoint_url.split("://", 1)[1]
    return {
        "boto3": fetch_models.Boto3Store(client),
        "minio": fetch_models.MinioStore(
            minio.Minio(endpoint, "test", "test-secret", secure=False, region="us-east-1")
        ),
    }


@pytest.mark.parametrize(("uri", "expected"), URI_CASES)
def test_parse_store_uri(uri, expected):
    assert fetch_models.parse_store_uri(uri) == expected


@pytest.mark.parametrize("uri", ["http://models/x", "s3:///x", "models/x"])
def test_parse_store_uri_refuses_other_schemes(uri):
    with pytest.raises(ValueError):
        fetch_models.parse_store_uri(uri)


@pytest.mark.parametrize("client_kind", ["boto3", "minio"])
def test_fetch_overlays_the_store_on_the_committed_folders(s3, tmp_path, client_kind):
    client, bucket = s3
    committed = tmp_path / "cxr_preprocess" / "config.pbtxt"
    committed.parent.mkdir()
    committed.write_text("placeholder")
    for key, body in OBJECTS.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    store = _stores(client)[client_kind]
    written = fetch_models.fetch(store, f"s3://{bucket}/model_repository", tmp_path)
    assert [path.relative_to(tmp_path).as_posix() for path in written] == [
        "cxr_net/1/model.onnx",
        "cxr_net/config.pbtxt",
        "cxr_net/drift_reference.json",
        "cxr_preprocess/config.pbtxt",
    ]
    assert (tmp_path / "cxr_net" / "1" / "model.onnx").read_bytes() == b"\x08\x07onnx"
    assert committed.read_text() == "exported"
    assert not list(tmp_path.rglob("*.part")) and not (tmp_path / "ignored.txt").exists()


def test_only_copies_the_named_files(s3, tmp_path):
    client, bucket = s3
    for key, body in OBJECTS.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    written = fetch_models.fetch(
        _stores(client)["minio"],
        f"s3://{bucket}/model_repository",
        tmp_path,
        "drift_reference.json",
    )
    assert [path.relative_to(tmp_path).as_posix() for path in written] == [
        "cxr_net/drift_reference.json"
    ]


def test_fetch_refuses_keys_escaping_the_repository(s3, tmp_path):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="model_repository/a/../../../etc/evil", Body=b"x")
    with pytest.raises(ValueError, match="outside the repository"):
        fetch_models.fetch(
            _stores(client)["boto3"], f"s3://{bucket}/model_repository", tmp_path / "repo"
        )
    assert not (tmp_path / "etc").exists()


def test_fetch_from_an_empty_store_fails(s3, tmp_path):
    client, bucket = s3
    with pytest.raises(SystemExit, match="holds no objects"):
        fetch_models.fetch(_stores(client)["boto3"], f"s3://{bucket}/model_repository", tmp_path)
    client.put_object(Bucket=bucket, Key="model_repository/x/config.pbtxt", Body=b"x")
    with pytest.raises(SystemExit, match=r"no drift_reference\.json files"):
        fetch_models.fetch(
            _stores(client)["boto3"],
            f"s3://{bucket}/model_repository",
            tmp_path,
            "drift_reference.json",
        )


@pytest.mark.parametrize("without_boto3", [False, True], ids=["boto3", "minio-fallback"])
def test_command_line_reads_the_standard_aws_variables(
    s3, tmp_path, monkeypatch, capsys, without_boto3
):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="repo/cxr_net/drift_reference.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="repo/cxr_net/1/model.onnx", Body=b"w")
    if without_boto3:
        monkeypatch.setitem(sys.modules, "boto3", None)
    store = fetch_models.store_from_environment()
    assert type(store).__name__ == ("MinioStore" if without_boto3 else "Boto3Store")
    assert (
        fetch_models.main([f"s3://{bucket}/repo", str(tmp_path), "--only", "drift_reference.json"])
        == 0
    )
    assert "fetched 1 files" in capsys.readouterr().out
    assert (tmp_path / "cxr_net" / "drift_reference.json").read_bytes() == b"{}"
    assert not (tmp_path / "cxr_net" / "1").exists()
