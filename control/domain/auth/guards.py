"""Role guards: every route names the roles allowed to call it."""

from __future__ import annotations

from collections.abc import Callable

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from control.db.models import Role
from control.domain.auth.identity import AuthUser
from control.errors import AuthenticationError, PermissionDeniedError

Guard = Callable[[ASGIConnection, BaseRouteHandler], None]  # type: ignore[type-arg]


def requires(*roles: Role) -> Guard:
    """A guard that admits only authenticated users holding one of ``roles``."""
    allowed = frozenset(roles)

    def guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        user = connection.scope.get("user")
        if not isinstance(user, AuthUser):
            raise AuthenticationError("authentication required")
        if user.role not in allowed:
            raise PermissionDeniedError(
                f"role {user.role.value!r} may not do this",
                detail={"allowed_roles": sorted(role.value for role in allowed)},
            )

    guard.allowed_roles = allowed  # type: ignore[attr-defined]
    return guard


ANY_ROLE = tuple(Role)
