"""Login throttling kept in the cache store (memory or Redis), counted atomically.

An attempt takes its slot *before* the password is checked: one atomic step increments the
account's and the address's counters together (a Lua script of ``INCR``s in Redis, so every
worker process shares the counts; under a lock in the memory store, which only one process
sees anyway) and returns the attempt's numbers; an attempt numbered past a limit is refused
unchecked. Checking first and counting after, as separate steps, let 20 parallel guesses
all be checked against a limit of 5.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from litestar.stores.base import Store
from litestar.stores.redis import RedisStore

# KEYS the counters. ARGV[1] the window in seconds. A window starts with the first attempt
# and is not extended by later ones (a fixed window per burst of attempts).
_INCR_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 then redis.call('EXPIRE', key, tonumber(ARGV[1])) end
end
return counts
"""

# KEYS[1] the counter: one attempt given back (a successful login is not a failure).
_DECR_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Attempt:
    """A counted login attempt: whether it may go on to the password check."""

    username_key: str
    address_key: str | None
    blocked: bool


class LoginThrottle:
    """Counts login attempts per account (case-insensitively) and per client address.

    An account is refused after ``max_failures`` attempts within ``window_s`` seconds, an
    address after four times as many (many people can share one address). A successful
    login clears the account's count and gives its slot at the address back, so the count
    that remains is the failures.
    """

    def __init__(self, store: Store, max_failures: int, window_s: int) -> None:
        self._store = store
        self._max = max_failures
        self._window = window_s
        self._lock = asyncio.Lock()
        self._redis_incr = (
            store._redis.register_script(_INCR_SCRIPT) if isinstance(store, RedisStore) else None
        )
        self._redis_decr = (
            store._redis.register_script(_DECR_SCRIPT) if isinstance(store, RedisStore) else None
        )

    @staticmethod
    def _user_key(username: str) -> str:
        return f"login-fail:user:{username.lower()}"

    async def _increment(self, keys: list[str]) -> list[int]:
        """Each counter in ``keys`` plus one, all in one atomic step; the new counts."""
        if isinstance(self._store, RedisStore) and self._redis_incr is not None:
            names = [self._store._make_key(key) for key in keys]
            return [int(n) for n in await self._redis_incr(keys=names, args=[self._window])]
        counts = []
        async with self._lock:
            for key in keys:
                raw = await self._store.get(key)
                count = (int(raw) if raw else 0) + 1
                expires_in = await self._store.expires_in(key) if raw else None
                await self._store.set(key, str(count), expires_in=expires_in or self._window)
                counts.append(count)
        return counts

    async def _decrement(self, key: str) -> None:
        if isinstance(self._store, RedisStore) and self._redis_decr is not None:
            await self._redis_decr(keys=[self._store._make_key(key)])
            return
        async with self._lock:
            raw = await self._store.get(key)
            if raw and int(raw) > 0:
                expires_in = await self._store.expires_in(key)
                await self._store.set(key, str(int(raw) - 1), expires_in=expires_in or 1)

    async def attempt(self, username: str, client_ip: str | None) -> Attempt:
        """Count one attempt against the account and the address; ``blocked`` past a limit."""
        username_key = self._user_key(username)
        address_key = f"login-fail:ip:{client_ip}" if client_ip else None
        counts = await self._increment(
            [username_key, address_key] if address_key else [username_key]
        )
        user_count, address_count = counts[0], counts[1] if address_key else 0
        blocked = user_count > self._max or address_count > self._max * 4
        return Attempt(username_key, address_key, blocked)

    async def succeeded(self, attempt: Attempt) -> None:
        """The attempt logged in: forget the account's failures, give the address its slot."""
        await self._store.delete(attempt.username_key)
        if attempt.address_key:
            await self._decrement(attempt.address_key)
