"""Rendered images and study metadata in the Litestar cache store, keyed by case version.

Every key carries the case id and :attr:`~control.db.models.Case.version`, which goes up on
any change to the case (new findings, decisions, assignment, sign-off), so a change makes
all earlier entries of the case unreachable; they expire after their TTL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlencode

import structlog
from litestar.stores.base import Store
from redis.exceptions import RedisError

from control.db.models import Case

log = structlog.get_logger("medvision.viewer")

Producer = Callable[[], Awaitable[bytes]]
"""Makes the bytes of a cache entry on a miss."""


def cache_key(case: Case, path: str, params: Mapping[str, object]) -> str:
    """The key of one view of ``case``: its id and version, ``path`` and the parameters.

    ``params`` are the parsed query parameters that shape the result; they are sorted by
    name and those that are ``None`` left out, so equal requests share one key.
    """
    query = urlencode(
        sorted((name, str(value)) for name, value in params.items() if value is not None)
    )
    return f"viewer:{case.id}:v{case.version}:{path}?{query}"


async def cached(cache: Store, key: str, ttl_s: int, produce: Producer) -> bytes:
    """The bytes stored under ``key``, or those ``produce`` makes, then kept for ``ttl_s``.

    Errors raised by ``produce`` propagate and nothing is stored. The cache only saves work:
    when Redis cannot be reached the bytes are produced anyway and the failure is logged.
    """
    try:
        hit = await cache.get(key)
    except RedisError as exc:
        log.warning("viewer_cache_unavailable", error=str(exc))
        return await produce()
    if hit is not None:
        return hit
    value = await produce()
    try:
        await cache.set(key, value, expires_in=ttl_s)
    except RedisError as exc:
        log.warning("viewer_cache_unavailable", error=str(exc))
    return value
