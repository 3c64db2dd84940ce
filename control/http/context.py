"""Request-scoped helpers shared by controllers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Request
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from control.domain.audit.chain import Actor
from control.domain.auth.identity import AuthUser
from control.http.client_address import client_address
from control.http.logging import ensure_request_id


def actor_from_request(request: Request) -> Actor:  # type: ignore[type-arg]
    """The audit actor for this request: the authenticated user (if any), the client address
    (forwarded headers believed only from trusted proxies), the server's request id."""
    user = request.scope.get("user")
    client_ip = client_address(request.scope, tuple(request.app.state.settings.trusted_proxies))
    request_id = ensure_request_id(request.scope)
    if isinstance(user, AuthUser):
        return Actor(user.username, user.role.value, client_ip, request_id)
    return Actor(None, None, client_ip, request_id)


async def provide_db_session(state: State) -> AsyncIterator[AsyncSession]:
    """A database session for one request; whatever the handler did not commit is rolled back."""
    async with state.session_factory() as session:
        try:
            yield session
        finally:
            await session.rollback()
