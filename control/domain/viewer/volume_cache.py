"""Decoded MRI volumes and label maps, kept in a small in-process LRU while slices scroll.

Decompressing and parsing a brain volume takes far longer than cutting one slice from it,
so the last few decoded objects stay in memory, keyed by object key and (when recorded)
SHA-256. Derived objects are written once under fresh keys, so a key names one content.
Every load first checks that the object is still stored, so a removed object is never
served from memory. Volumes come back reoriented to the closest RAS+ axes, the voxel order
:func:`~control.imaging.render.volume_slice` displays correctly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from nibabel.orientations import apply_orientation, io_orientation

from control.errors import InvalidInputError, NotFoundError
from control.imaging.render import Window, volume_window
from control.imaging.volumes import BRATS_CHANNELS, nifti_channels, nifti_image
from control.storage import ObjectStore

K = TypeVar("K")
V = TypeVar("V")

VOLUME_ENTRIES = 2
LABEL_MAP_ENTRIES = 4


class LruCache(Generic[K, V]):
    """A mapping that keeps at most ``capacity`` entries, dropping the least recently used."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        #: One lock per key being loaded, dropped when nobody waits for it.
        self._loading: dict[K, anyio.Lock] = {}

    def get(self, key: K) -> V | None:
        """The value under ``key`` (now the most recently used), or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``, dropping the oldest entry beyond the capacity."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The value under ``key``, from ``load`` when missing; concurrent callers for one
        key wait for a single ``load`` instead of each running their own."""
        lock = self._loading.setdefault(key, anyio.Lock())
        try:
            async with lock:
                found = self.get(key)
                if found is None:
                    found = await load()
                    self.put(key, found)
                return found
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._loading.pop(key, None)


@dataclass(frozen=True, eq=False)
class DisplayVolume:
    """A four-channel MRI volume ready for slicing.

    ``channels`` is float32 ``[4, X, Y, Z]`` in :data:`BRATS_CHANNELS` order, reoriented to
    RAS+; ``stored_shape`` and ``spacing_mm`` describe the grid in stored voxel order (the
    grid an edited mask must match); ``windows`` holds each channel's default display window.
    """

    channels: npt.NDArray[np.float32]
    stored_shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    windows: dict[str, Window]

    def channel(self, name: str) -> npt.NDArray[np.float32]:
        """The reoriented ``[X, Y, Z]`` voxels of channel ``name``."""
        voxels: npt.NDArray[np.float32] = self.channels[BRATS_CHANNELS.index(name)]
        return voxels


_volumes: LruCache[tuple[str, str | None], DisplayVolume] = LruCache(VOLUME_ENTRIES)
_label_maps: LruCache[tuple[str, str | None], npt.NDArray[Any]] = LruCache(LABEL_MAP_ENTRIES)


async def load_volume(store: ObjectStore, key: str, sha256: str | None = None) -> DisplayVolume:
    """The decoded four-channel volume stored under ``key`` (gzip NIfTI, channels last).

    Raises ``NotFoundError("object_not_found")`` when the object is gone, the store's
    integrity errors, and ``InvalidInputError`` as :func:`nifti_channels` does.
    """
    return await _load(_volumes, store, key, sha256, _decode_volume)


async def load_label_map(
    store: ObjectStore, key: str, sha256: str | None = None
) -> npt.NDArray[Any]:
    """The decoded ``[X, Y, Z]`` label map stored under ``key``, reoriented to RAS+.

    Raises ``NotFoundError("object_not_found")`` when the object is gone, the store's
    integrity errors, and ``InvalidInputError("corrupt_label_map")`` for anything but a
    readable 3-D NIfTI-1 image.
    """
    return await _load(_label_maps, store, key, sha256, _decode_label_map)


async def _load(
    lru: LruCache[tuple[str, str | None], V],
    store: ObjectStore,
    key: str,
    sha256: str | None,
    decode: Callable[[bytes], V],
) -> V:
    if not await store.exists(key):
        raise NotFoundError(
            f"no object stored under {key!r}", code="object_not_found", detail={"key": key}
        )

    async def read_and_decode() -> V:
        payload = await store.get(key, expected_sha256=sha256)
        return await anyio.to_thread.run_sync(decode, payload)

    # A viewer opening fetches several slices of one object at once: one read and decode.
    return await lru.get_or_load((key, sha256), read_and_decode)


def _decode_volume(payload: bytes) -> DisplayVolume:
    data, affine = nifti_channels(payload)
    channels_last = _to_ras(np.moveaxis(data, 0, -1), affine)
    channels = np.moveaxis(np.asarray(channels_last, dtype=np.float32), -1, 0)
    x, y, z = (int(size) for size in data.shape[1:])
    dx, dy, dz = (float(value) for value in np.linalg.norm(affine[:3, :3], axis=0))
    return DisplayVolume(
        channels=channels,
        stored_shape=(x, y, z),
        spacing_mm=(round(dx, 6), round(dy, 6), round(dz, 6)),
        windows={name: volume_window(channels[index]) for index, name in enumerate(BRATS_CHANNELS)},
    )


def _decode_label_map(payload: bytes) -> npt.NDArray[Any]:
    try:
        image = nifti_image(payload)
        labels = np.asarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # gzip and nibabel report damage with many exception types
        raise _corrupt_label_map(str(exc)) from exc
    if labels.ndim != 3:
        raise _corrupt_label_map(f"shape {list(labels.shape)} is not 3-D")
    return _to_ras(labels, affine)


def _to_ras(data: npt.NDArray[Any], affine: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """``data`` (voxel axes first) flipped and transposed onto the closest RAS+ axes (views)."""
    orientation = io_orientation(affine)  # type: ignore[no-untyped-call]
    oriented: npt.NDArray[Any] = apply_orientation(data, orientation)  # type: ignore[no-untyped-call]
    return oriented


def _corrupt_label_map(reason: str) -> InvalidInputError:
    return InvalidInputError(f"unreadable label map: {reason}", code="corrupt_label_map")
