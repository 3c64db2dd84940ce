"""Stored instances' de-identified headers as DICOM JSON, cached by content hash.

The header of a stored object never changes (objects are content-addressed by SHA-256), so
the cache key is the hash alone and one entry serves every route and every caller. The
conversion is the viewer's (pixel data and other bulk data over 1 KiB left out).
"""

from __future__ import annotations

import json

from litestar.datastructures import State

from control.db.models import Instance
from control.domain.dicomweb.json_model import Attributes
from control.domain.viewer.cache import cached
from control.domain.viewer.service import header_json

__all__ = ["instance_header", "instance_header_json"]


async def instance_header_json(state: State, instance: Instance) -> bytes:
    """The instance's stored header as DICOM JSON bytes (one dataset, no bulk data)."""
    store = state.store
    return await cached(
        state.cache,
        f"dicomweb:header:{instance.sha256}",
        state.settings.cache_ttl_s,
        lambda: header_json(store, instance),
    )


async def instance_header(state: State, instance: Instance) -> Attributes:
    """The instance's stored header as a DICOM JSON dataset (see :func:`instance_header_json`)."""
    header: Attributes = json.loads(await instance_header_json(state, instance))
    return header
