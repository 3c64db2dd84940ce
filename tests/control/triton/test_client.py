"""TritonClient against a real Triton server running tiny Python-backend models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from control.triton.client import (
    InferenceBadInputError,
    InferenceError,
    InferenceTimeoutError,
    InferenceUnavailableError,
    TritonClient,
    _SharedMemoryPool,
    is_local_url,
)
from control.triton.server import TritonServer, find_free_port, free_triton_ports
from tests.control.triton import skip_without_triton, sleepy_started, write_test_repository

skip_without_triton()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repository = write_test_repository(tmp_path_factory.mktemp("repository"))
    with TritonServer(
        repository,
        **free_triton_ports(),
        startup_timeout_s=60,
    ) as running:
        yield running


def plain_client(server: TritonServer, **kwargs: object) -> TritonClient:
    return TritonClient(server.url_grpc, use_shared_memory=False, **kwargs)  # type: ignore[arg-type]


async def test_readiness(server: TritonServer) -> None:
    async with plain_client(server) as client:
        assert await client.is_ready()
        assert await client.model_ready("double")
        assert not await client.model_ready("no_such_model")


async def test_model_parameters_and_metadata(server: TritonServer) -> None:
    async with plain_client(server) as client:
        assert await client.model_parameters("double") == {"labels": "a,b", "model_version": "7"}
        metadata = await client.model_metadata("double")
    assert metadata["name"] == "double"
    assert [tensor["name"] for tensor in metadata["inputs"]] == ["X"]


async def test_round_trip(server: TritonServer) -> None:
    x = np.arange(5, dtype=np.float32)
    async with plain_client(server) as client:
        result = await client.infer("double", {"X": x}, ["Y"])
    np.testing.assert_array_equal(result["Y"], x * 2)
    assert result["Y"].dtype == np.float32


@pytest.mark.parametrize("shared_memory", [False, True], ids=["inline", "shm"])
async def test_dtypes_round_trip(server: TritonServer, shared_memory: bool) -> None:
    rng = np.random.default_rng(0)
    inputs = {
        "U16": rng.integers(0, 65535, (31, 17), dtype=np.uint16),
        "B": rng.random((3, 5)) > 0.5,
        "U8": rng.integers(0, 255, (2, 9), dtype=np.uint8),
        "I32": rng.integers(-(2**31), 2**31 - 1, (4, 4), dtype=np.int32),
        "I64": rng.integers(-(2**62), 2**62, (1, 3), dtype=np.int64),
    }
    async with TritonClient(server.url_grpc, use_shared_memory=shared_memory) as client:
        result = await client.infer("echo", inputs, [f"{name}_OUT" for name in inputs])
        assert client.shared_memory_stats.requests == (1 if shared_memory else 0)
    for name, value in inputs.items():
        np.testing.assert_array_equal(result[f"{name}_OUT"], value)
        assert result[f"{name}_OUT"].dtype == value.dtype


async def test_a_region_still_held_by_triton_is_unregistered_once_released(
    server: TritonServer,
) -> None:
    # Triton refuses to unregister a region that an in-flight request still references
    # ("currently in use"); the pool waits for the release instead of leaving it registered.
    client = grpcaio.InferenceServerClient(server.url_grpc)
    pool = _SharedMemoryPool("medvision_test_held")
    x = np.ones(1000, dtype=np.float32)
    try:
        region = await pool.acquire(client, x.nbytes)
        shm.set_shared_memory_region(region.handle, [x])
        infer_input = grpcaio.InferInput("X", [x.size], "FP32")
        infer_input.set_shared_memory(region.name, x.nbytes)
        request = asyncio.create_task(client.infer("sleepy", [infer_input]))
        await sleepy_started(server.repository, executions=1)  # it then sleeps for 1.5 s
        started = time.monotonic()
        await pool.clear(client)
        waited = time.monotonic() - started
        result = await request
        status = await client.get_system_shared_memory_status(as_json=True)
    finally:
        await client.close()
    assert 0.3 < waited < 5.0
    assert not [name for name in status.get("regions", {}) if name.startswith("medvision_test")]
    assert result.get_response().model_name == "sleepy"  # the request itself was unharmed


async def test_the_region_of_a_timed_out_request_is_never_reused(server: TritonServer) -> None:
    # Triton goes on running a request whose client gave up and writes its outputs into the
    # request's region later: handing that region to the next request could mix two answers.
    x = np.linspace(0, 1, 5000, dtype=np.float32)
    probe = grpcaio.InferenceServerClient(server.url_grpc)
    try:
        async with TritonClient(server.url_grpc, timeout_s=0.3) as client:
            with pytest.raises(InferenceTimeoutError):
                await client.infer("sleepy", {"X": x}, ["Y"], output_bytes={"Y": x.nbytes})
            result = await client.infer(
                "double", {"X": x}, ["Y"], output_bytes={"Y": x.nbytes}, timeout_s=10
            )
            assert client.shared_memory_stats.regions_retired == 1
            assert client.shared_memory_stats.requests == 1
        # close waited for Triton to let go of the retired region, then unregistered it
        status = await probe.get_system_shared_memory_status(as_json=True)
    finally:
        await probe.close()
    np.testing.assert_array_equal(result["Y"], x * 2)
    assert not [name for name in status.get("regions", {}) if name.startswith("medvision_")]


async def test_shared_memory_used_on_loopback_and_matches_inline(server: TritonServer) -> None:
    x = np.linspace(-1, 1, 100_000, dtype=np.float32)
    probe = grpcaio.InferenceServerClient(server.url_grpc)
    try:
        async with plain_client(server) as inline:
            expected = await inline.infer("double", {"X": x}, ["Y"])
        client = TritonClient(server.url_grpc)
        assert client.shared_memory  # "auto" on 127.0.0.1
        try:
            first = await client.infer("double", {"X": x}, ["Y"])
            second = await client.infer("double", {"X": x[:10]}, ["Y"])
            stats = client.shared_memory_stats
            assert stats.requests == 2
            assert stats.regions_registered == 1  # the region is reused
            assert stats.fallbacks == 0
            status = await probe.get_system_shared_memory_status(as_json=True)
            names = [region["name"] for region in status.get("regions", {}).values()]
            assert any(name.startswith("medvision_") for name in names)
        finally:
            await client.close()
        status = await probe.get_system_shared_memory_status(as_json=True)
        assert not [name for name in status.get("regions", {}) if name.startswith("medvision_")]
    finally:
        await probe.close()
    np.testing.assert_array_equal(first["Y"], expected["Y"])
    np.testing.assert_array_equal(second["Y"], expected["Y"][:10])


async def test_outputs_through_shared_memory_match_inline(server: TritonServer) -> None:
    x = np.linspace(-1, 1, 50_000, dtype=np.float32)
    async with plain_client(server) as inline:
        expected = await inline.infer("double", {"X": x}, ["Y"])
    async with TritonClient(server.url_grpc) as client:
        first = await client.infer("double", {"X": x}, ["Y"], output_bytes={"Y": x.nbytes})
        # the region is reused: the first answer must be a copy, not a view into it
        second = await client.infer(
            "double", {"X": x[::-1].copy()}, ["Y"], output_bytes={"Y": x.nbytes}
        )
        assert client.shared_memory_stats.requests == 2
        assert client.shared_memory_stats.fallbacks == 0
    np.testing.assert_array_equal(first["Y"], expected["Y"])
    np.testing.assert_array_equal(second["Y"], expected["Y"][::-1])


def test_shared_memory_auto_only_for_loopback() -> None:
    assert is_local_url("127.0.0.1:8001")
    assert is_local_url("localhost:8001")
    assert is_local_url("[::1]:8001")
    assert not is_local_url("triton.internal:8001")
    assert not TritonClient("10.0.0.5:8001").shared_memory


@pytest.mark.parametrize("shared_memory", [False, True], ids=["inline", "shm"])
async def test_wrong_dtype_is_bad_input(server: TritonServer, shared_memory: bool) -> None:
    async with TritonClient(server.url_grpc, use_shared_memory=shared_memory) as client:
        with pytest.raises(InferenceBadInputError) as caught:
            await client.infer("double", {"X": np.arange(3, dtype=np.float64)}, ["Y"])
    assert caught.value.code == "inference_bad_input"
    assert caught.value.status_code == 400
    assert caught.value.detail["model"] == "double"
    assert "FP64" in caught.value.detail["triton_message"]


async def test_unsupported_dtype_is_bad_input_before_sending(server: TritonServer) -> None:
    async with plain_client(server) as client:
        with pytest.raises(InferenceBadInputError):
            await client.infer("double", {"X": np.zeros(3, dtype=np.complex64)}, ["Y"])


async def test_wrong_rank_is_bad_input(server: TritonServer) -> None:
    async with plain_client(server) as client:
        with pytest.raises(InferenceBadInputError) as caught:
            await client.infer("double", {"X": np.ones((2, 2), dtype=np.float32)}, ["Y"])
    assert "shape" in caught.value.detail["triton_message"]


async def test_model_errors_are_mapped_and_the_next_request_succeeds(server: TritonServer) -> None:
    x = np.array([1.0, 2.0], dtype=np.float32)
    async with TritonClient(server.url_grpc) as client:
        with pytest.raises(InferenceBadInputError) as refused:
            await client.infer("double", {"X": np.array([np.nan], dtype=np.float32)}, ["Y"])
        assert "X contains NaN" in refused.value.detail["triton_message"]
        with pytest.raises(InferenceError) as exploded:
            await client.infer("double", {"X": np.array([-999], dtype=np.float32)}, ["Y"])
        assert exploded.value.code == "inference_failed"
        assert exploded.value.status_code == 502
        assert "exploded on -999" in exploded.value.detail["triton_message"]
        result = await client.infer("double", {"X": x}, ["Y"])
    np.testing.assert_array_equal(result["Y"], x * 2)


async def test_unknown_model_is_unavailable_without_retrying(server: TritonServer) -> None:
    async with plain_client(server, retries=5, backoff_s=1.0) as client:
        started = time.monotonic()
        with pytest.raises(InferenceUnavailableError) as caught:
            await client.infer("no_such_model", {"X": np.ones(1, np.float32)}, ["Y"])
    assert time.monotonic() - started < 1.0
    assert caught.value.detail["triton_status"] == "NOT_FOUND"


async def test_server_down_is_unavailable_after_retries() -> None:
    url = f"127.0.0.1:{find_free_port()}"
    async with TritonClient(url, retries=3, backoff_s=0.05, timeout_s=10) as client:
        assert not await client.is_ready()
        started = time.monotonic()
        with pytest.raises(InferenceUnavailableError) as caught:
            await client.infer("double", {"X": np.ones(4, np.float32)}, ["Y"])
        elapsed = time.monotonic() - started
    assert caught.value.code == "inference_unavailable"
    assert caught.value.status_code == 503
    assert caught.value.detail["attempts"] == 4
    assert 0.05 + 0.1 + 0.2 <= elapsed < 5.0


async def test_deadline_is_timeout(server: TritonServer) -> None:
    async with plain_client(server, timeout_s=0.3) as client:
        started = time.monotonic()
        with pytest.raises(InferenceTimeoutError) as caught:
            await client.infer("sleepy", {"X": np.ones(2, np.float32)}, ["Y"])
        elapsed = time.monotonic() - started
    assert caught.value.code == "inference_timeout"
    assert caught.value.status_code == 504
    assert caught.value.detail["model"] == "sleepy"
    assert elapsed < 1.2


async def test_per_call_deadline_overrides_the_default(server: TritonServer) -> None:
    async with plain_client(server, timeout_s=30) as client:
        with pytest.raises(InferenceTimeoutError):
            await client.infer("sleepy", {"X": np.ones(2, np.float32)}, ["Y"], timeout_s=0.2)


async def _unregister_all(probe: grpcaio.InferenceServerClient) -> None:
    """Unregister every region, waiting while Triton still holds one after a response."""
    deadline = time.monotonic() + 5
    while True:
        try:
            await probe.unregister_system_shared_memory()
            return
        except InferenceServerException as exc:
            held = "in use" in str(exc) or "Failed to unregister" in str(exc)
            if not held or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)


async def test_lost_shared_memory_registration_falls_back_and_recovers(
    server: TritonServer,
) -> None:
    x = np.arange(8, dtype=np.float32)
    probe = grpcaio.InferenceServerClient(server.url_grpc)
    try:
        async with TritonClient(server.url_grpc) as client:
            await client.infer("double", {"X": x}, ["Y"])
            await _unregister_all(probe)  # as after a server restart
            again = await client.infer("double", {"X": x}, ["Y"])
            assert client.shared_memory_stats.fallbacks == 1
            third = await client.infer("double", {"X": x}, ["Y"])
            assert client.shared_memory_stats.requests == 2
    finally:
        await probe.close()
    np.testing.assert_array_equal(again["Y"], x * 2)
    np.testing.assert_array_equal(third["Y"], x * 2)
