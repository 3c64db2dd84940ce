"""Failed-login throttling kept in the cache store (memory or Redis)."""

from __future__ import annotations

from litestar.stores.base import Store


class LoginThrottle:
    """Counts failed logins per account and per client address within a sliding window."""

    def __init__(self, store: Store, max_failures: int, window_s: int) -> None:
        self._store = store
        self._max = max_failures
        self._window = window_s

    @staticmethod
    def _keys(username: str, client_ip: str | None) -> list[str]:
        keys = [f"login-fail:user:{username.lower()}"]
        if client_ip:
            keys.append(f"login-fail:ip:{client_ip}")
        return keys

    async def _count(self, key: str) -> int:
        raw = await self._store.get(key)
        return int(raw) if raw else 0

    async def is_blocked(self, username: str, client_ip: str | None) -> bool:
        """True when the account or the address has reached the failure limit."""
        counts = [await self._count(key) for key in self._keys(username, client_ip)]
        per_ip_limit = self._max * 4
        user_blocked = counts[0] >= self._max
        ip_blocked = len(counts) > 1 and counts[1] >= per_ip_limit
        return user_blocked or ip_blocked

    async def record_failure(self, username: str, client_ip: str | None) -> None:
        """Count one failure against the account and the address."""
        for key in self._keys(username, client_ip):
            await self._store.set(key, str(await self._count(key) + 1), expires_in=self._window)

    async def reset(self, username: str) -> None:
        """Forget the account's failures after a successful login."""
        await self._store.delete(self._keys(username, None)[0])
