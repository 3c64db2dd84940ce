"""An async Triton client over gRPC: dtype mapping, deadlines, retries, errors, shared memory.

Every failure surfaces as an :class:`InferenceError` subclass with a stable ``code``:
``inference_unavailable`` (503), ``inference_bad_input`` (400), ``inference_timeout`` (504)
or ``inference_failed`` (502); ``detail`` carries the model name and Triton's message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from control.errors import MedVisionError
from control.observability.tracing import grpc_trace_headers
from control.observability.triton import triton_call

logger = logging.getLogger("medvision.triton")

T = TypeVar("T")

#: numpy dtype → Triton datatype; anything else is rejected before a request is sent.
NUMPY_TO_TRITON: dict[np.dtype[Any], str] = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
}

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_SHM_ALIGN = 64
_SHM_MIN_REGION = 1 << 16
_BACKOFF_CAP_S = 5.0
#: How long a region Triton still holds is waited for before it is left registered.
_UNREGISTER_TIMEOUT_S = 10.0


class InferenceError(MedVisionError):
    """Triton failed to run the request for a reason not covered by a subclass."""

    status_code = 502
    code = "inference_failed"


class InferenceUnavailableError(InferenceError):
    """Triton is unreachable or the model is not ready or not loaded (after retries)."""

    status_code = 503
    code = "inference_unavailable"


class InferenceBadInputError(InferenceError):
    """Triton rejected the inputs: dtype, shape or rank, or content a model refused."""

    status_code = 400
    code = "inference_bad_input"


class InferenceTimeoutError(InferenceError):
    """The request did not finish before its deadline."""

    status_code = 504
    code = "inference_timeout"


def triton_dtype(array: np.ndarray[Any, Any]) -> str:
    """The Triton datatype name for ``array``'s dtype; :class:`InferenceBadInputError` if none."""
    try:
        return NUMPY_TO_TRITON[array.dtype.newbyteorder("=")]
    except KeyError:
        raise InferenceBadInputError(
            f"arrays of dtype {array.dtype} cannot be sent to Triton",
            detail={"dtype": str(array.dtype)},
        ) from None


def _status(exc: InferenceServerException) -> str:
    status = exc.status() or ""
    return str(status).removeprefix("StatusCode.")


def map_error(exc: InferenceServerException, model: str) -> InferenceError:
    """The MedVision error for a Triton/gRPC failure on ``model``."""
    status = _status(exc)
    message = exc.message() or str(exc)
    detail = {"model": model, "triton_status": status, "triton_message": message}
    if status == "INVALID_ARGUMENT":
        return InferenceBadInputError(f"model {model} rejected the input: {message}", detail=detail)
    if status == "DEADLINE_EXCEEDED":
        return InferenceTimeoutError(f"model {model} did not answer in time", detail=detail)
    if status == "UNAVAILABLE":
        return InferenceUnavailableError(
            f"Triton is unavailable for {model}: {message}", detail=detail
        )
    if status == "NOT_FOUND":
        return InferenceUnavailableError(f"model {model} is not loaded: {message}", detail=detail)
    return InferenceError(f"model {model} failed: {message}", detail=detail)


def is_local_url(url: str) -> bool:
    """Whether the ``host:port`` URL names this machine's loopback interface."""
    host = url.rsplit(":", 1)[0] if ":" in url else url
    return host.strip("[]") in _LOCAL_HOSTS


@dataclass
class SharedMemoryStats:
    """What the client did with system shared memory so far."""

    regions_registered: int = 0
    #: regions taken out of use because their request failed or timed out
    regions_retired: int = 0
    requests: int = 0
    fallbacks: int = 0


@dataclass
class _Region:
    name: str
    key: str
    byte_size: int
    handle: Any


class _SharedMemoryPool:
    """Registered system shared memory regions, reused across requests, one request at a time."""

    def __init__(self, prefix: str, max_idle: int = 4) -> None:
        self.prefix = prefix
        self.max_idle = max_idle
        self.idle: list[_Region] = []
        self.registered: dict[str, _Region] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._names = itertools.count()

    async def acquire(self, client: grpcaio.InferenceServerClient, nbytes: int) -> _Region:
        fitting = [region for region in self.idle if region.byte_size >= nbytes]
        if fitting:
            region = min(fitting, key=lambda r: r.byte_size)
            self.idle.remove(region)
            return region
        size = max(_SHM_MIN_REGION, 1 << (nbytes - 1).bit_length())
        name = f"{self.prefix}_{next(self._names)}"
        key = f"/{name}"
        handle = shm.create_shared_memory_region(name, key, size, create_only=True)
        try:
            await client.register_system_shared_memory(name, key, size)
        except BaseException:
            shm.destroy_shared_memory_region(handle)
            raise
        region = _Region(name, key, size, handle)
        self.registered[name] = region
        return region

    def release(self, client: grpcaio.InferenceServerClient, region: _Region) -> None:
        """Return ``region`` after a request that got its answer, for the next one to reuse."""
        if region.name not in self.registered:
            return
        self.idle.append(region)
        if len(self.idle) > self.max_idle:
            smallest = min(self.idle, key=lambda r: r.byte_size)
            self.idle.remove(smallest)
            self.retire(client, smallest)  # Triton may hold it a moment longer: not inline

    def retire(self, client: grpcaio.InferenceServerClient, region: _Region) -> None:
        """Take ``region`` out of use: never handed to another request, it is unregistered
        (once Triton lets go of it) and destroyed in the background; :meth:`clear` waits.

        Used for an evicted idle region and for the region of a request that failed or
        timed out, which Triton may still be running and writing outputs into.
        """
        if region.name not in self.registered:
            return
        task = asyncio.get_running_loop().create_task(self._drop(client, region))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _drop(self, client: grpcaio.InferenceServerClient | None, region: _Region) -> None:
        self.registered.pop(region.name, None)
        if client is not None:
            await self._unregister(client, region.name)
        shm.destroy_shared_memory_region(region.handle)

    async def _unregister(self, client: grpcaio.InferenceServerClient, name: str) -> None:
        """Unregister ``name`` from Triton, waiting while the server still holds it.

        Triton keeps a reference to a region until it has released the last response that
        used it, which can be a moment after the client has that response; an unregister in
        that window is refused as "currently in use" and is retried until the timeout.
        """
        deadline = time.monotonic() + _UNREGISTER_TIMEOUT_S
        pause = 0.005
        while True:
            remaining = deadline - time.monotonic()
            try:
                await client.unregister_system_shared_memory(
                    name, client_timeout=max(remaining, 0.001)
                )
                return
            except InferenceServerException as exc:
                in_use = "currently in use" in (exc.message() or "")
                if not in_use or time.monotonic() + pause >= deadline:
                    # Triton gone, or still holding the region: the server drops it on exit.
                    logger.warning("could not unregister %s: %s", name, exc)
                    return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def clear(self, client: grpcaio.InferenceServerClient | None) -> None:
        """Unregister (when ``client`` is given) and destroy every region."""
        self.idle.clear()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        for region in list(self.registered.values()):
            await self._drop(client, region)


class TritonClient:
    """Async access to one Triton server over gRPC.

    ``timeout_s`` is the default deadline of a call, retries included; UNAVAILABLE answers
    are retried ``retries`` times with exponential backoff from ``backoff_s``. With
    ``use_shared_memory`` (``"auto"``: when ``url`` is loopback), inputs travel through
    registered system shared memory regions, reused between requests; if registering fails
    the client falls back to sending tensors in the request.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        *,
        timeout_s: float = 30.0,
        retries: int = 5,
        backoff_s: float = 0.2,
        use_shared_memory: bool | Literal["auto"] = "auto",
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.shared_memory = (
            is_local_url(url) if use_shared_memory == "auto" else bool(use_shared_memory)
        )
        self.shared_memory_stats = SharedMemoryStats()
        self._client: grpcaio.InferenceServerClient | None = None
        self._pool = _SharedMemoryPool(f"medvision_{os.getpid()}_{id(self):x}")

    def _grpc(self) -> grpcaio.InferenceServerClient:
        if self._client is None:
            self._client = grpcaio.InferenceServerClient(self.url)
        return self._client

    async def is_ready(self) -> bool:
        """True when the server answers that it is ready; False otherwise, unreachable included."""
        try:
            return bool(await self._grpc().is_server_ready(client_timeout=self.timeout_s))
        except InferenceServerException:
            return False

    async def model_ready(self, name: str, version: str = "") -> bool:
        """True when the server answers that ``name`` (``version``) is ready; False otherwise."""
        try:
            return bool(
                await self._grpc().is_model_ready(name, version, client_timeout=self.timeout_s)
            )
        except InferenceServerException:
            return False

    async def model_metadata(self, name: str) -> dict[str, Any]:
        """The model's metadata (inputs, outputs, versions) as JSON-style dict."""

        async def call(budget_s: float) -> dict[str, Any]:
            metadata = await self._grpc().get_model_metadata(
                name, as_json=True, client_timeout=budget_s
            )
            return dict(metadata)

        return await self._with_retries(name, call, self.timeout_s)

    async def model_parameters(self, name: str) -> dict[str, str]:
        """The ``parameters`` map of the model's config.pbtxt (labels, thresholds, versions)."""

        async def call(budget_s: float) -> dict[str, Any]:
            client = self._grpc()
            config = await client.get_model_config(name, as_json=True, client_timeout=budget_s)
            return dict(config.get("config", {}))

        config = await self._with_retries(name, call, self.timeout_s)
        parameters: dict[str, Any] = config.get("parameters", {})
        return {key: str(value.get("string_value", "")) for key, value in parameters.items()}

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray[Any, Any]],
        outputs: list[str],
        *,
        timeout_s: float | None = None,
        output_bytes: dict[str, int] | None = None,
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run ``model`` on ``inputs`` and return the requested ``outputs`` as arrays.

        The call ends within ``timeout_s`` (default: the client's) or raises
        :class:`InferenceTimeoutError`; other failures raise the matching
        :class:`InferenceError` subclass. With shared memory on, ``output_bytes`` (an upper
        bound per output name) lets large outputs come back through shared memory too.
        """
        with triton_call(model):  # span + latency histogram (control.observability.triton)
            return await self._infer(model, inputs, outputs, timeout_s, output_bytes)

    async def _infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray[Any, Any]],
        outputs: list[str],
        timeout_s: float | None,
        output_bytes: dict[str, int] | None,
    ) -> dict[str, np.ndarray[Any, Any]]:
        arrays = {name: np.ascontiguousarray(value) for name, value in inputs.items()}
        dtypes = {name: triton_dtype(value) for name, value in arrays.items()}
        deadline_s = self.timeout_s if timeout_s is None else timeout_s
        out_sizes = {k: v for k, v in (output_bytes or {}).items() if k in outputs and v > 0}
        region = await self._shared_region(arrays, out_sizes) if self.shared_memory else None
        answered = False
        try:
            try:
                answer = await self._infer_once(
                    model, arrays, dtypes, outputs, region, deadline_s, out_sizes
                )
            except InferenceError as exc:
                if region is None or "shared memory" not in exc.message.lower():
                    raise
                # The server lost the registration (restarted): rebuild the pool, send plainly.
                logger.warning("Triton lost shared memory registrations; re-sending without")
                self.shared_memory_stats.fallbacks += 1
                await self._pool.clear(None)
                region = None
                answer = await self._infer_once(
                    model, arrays, dtypes, outputs, None, deadline_s, {}
                )
            answered = True
            return answer
        finally:
            if region is not None and answered:
                self._pool.release(self._grpc(), region)
            elif region is not None:  # Triton may still write into it: never reuse it
                self._pool.retire(self._grpc(), region)
                self.shared_memory_stats.regions_retired += 1

    async def _infer_once(
        self,
        model: str,
        arrays: dict[str, np.ndarray[Any, Any]],
        dtypes: dict[str, str],
        outputs: list[str],
        region: _Region | None,
        deadline_s: float,
        output_bytes: dict[str, int],
    ) -> dict[str, np.ndarray[Any, Any]]:
        infer_inputs = []
        offset = 0
        for name, array in arrays.items():
            infer_input = grpcclient.InferInput(name, list(array.shape), dtypes[name])
            if region is not None and array.nbytes:
                shm.set_shared_memory_region(region.handle, [array], offset=offset)
                infer_input.set_shared_memory(region.name, array.nbytes, offset)
                offset += _aligned(array.nbytes)
            else:
                infer_input.set_data_from_numpy(array)
            infer_inputs.append(infer_input)
        requested = []
        output_offsets: dict[str, int] = {}
        for name in outputs:
            requested_output = grpcclient.InferRequestedOutput(name)
            if region is not None and name in output_bytes:
                requested_output.set_shared_memory(region.name, output_bytes[name], offset)
                output_offsets[name] = offset
                offset += _aligned(output_bytes[name])
            requested.append(requested_output)

        async def call(budget_s: float) -> Any:
            return await self._grpc().infer(
                model,
                infer_inputs,
                outputs=requested,
                client_timeout=budget_s,
                headers=grpc_trace_headers() or None,  # W3C traceparent for Triton's tracing
            )

        result = await self._with_retries(model, call, deadline_s)
        if region is not None:
            self.shared_memory_stats.requests += 1
        answer: dict[str, np.ndarray[Any, Any]] = {}
        for name in outputs:
            if region is not None and name in output_offsets:
                meta = result.get_output(name)
                array = shm.get_contents_as_numpy(
                    region.handle,
                    triton_to_np_dtype(meta.datatype),
                    list(meta.shape),
                    offset=output_offsets[name],
                ).copy()  # the region is reused by the next request
            else:
                array = result.as_numpy(name)
            if array is None:
                raise InferenceError(
                    f"model {model} returned no output {name}",
                    detail={"model": model, "output": name},
                )
            answer[name] = array
        return answer

    async def _shared_region(
        self, arrays: dict[str, np.ndarray[Any, Any]], output_bytes: dict[str, int]
    ) -> _Region | None:
        nbytes = sum(_aligned(array.nbytes) for array in arrays.values())
        nbytes += sum(_aligned(size) for size in output_bytes.values())
        if nbytes == 0:
            return None
        try:
            region = await self._pool.acquire(self._grpc(), nbytes)
        except (shm.SharedMemoryException, InferenceServerException, OSError) as exc:
            logger.warning("system shared memory unavailable (%s); sending tensors inline", exc)
            self.shared_memory = False
            self.shared_memory_stats.fallbacks += 1
            return None
        self.shared_memory_stats.regions_registered = len(self._pool.registered)
        return region

    async def _with_retries(
        self, model: str, call: Callable[[float], Awaitable[T]], deadline_s: float
    ) -> T:
        deadline = time.monotonic() + deadline_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                return await call(max(remaining, 0.001))
            except InferenceServerException as exc:
                error = map_error(exc, model)
                if _status(exc) != "UNAVAILABLE":
                    raise error from exc
                pause = min(self.backoff_s * 2**attempt, _BACKOFF_CAP_S)
                if attempt >= self.retries or time.monotonic() + pause >= deadline:
                    error.detail["attempts"] = attempt + 1
                    raise error from exc
                logger.debug("Triton unavailable for %s, retrying in %.2f s", model, pause)
                await asyncio.sleep(pause)
                attempt += 1

    async def close(self) -> None:
        """Unregister and free shared memory regions and close the channel. Safe to call twice."""
        client = self._client
        self._client = None
        await self._pool.clear(client)
        if client is not None:
            await client.close()

    async def __aenter__(self) -> TritonClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _aligned(nbytes: int) -> int:
    return (nbytes + _SHM_ALIGN - 1) // _SHM_ALIGN * _SHM_ALIGN
