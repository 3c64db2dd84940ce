"""Bearer-token authentication for every route except the public ones."""

from __future__ import annotations

import uuid

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import select

from control.db.models import RevokedToken, User
from control.domain.auth.identity import AuthUser
from control.domain.auth.tokens import TokenCodec
from control.errors import AuthenticationError

PUBLIC_PATHS = {"/health", "/ready", "/api/auth/token", "/schema"}


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer <jwt>`` to an active, unrevoked user or answers 401."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("missing bearer token", code="not_authenticated")
        codec: TokenCodec = connection.app.state.token_codec
        claims = codec.verify(token.strip(), "access")
        try:
            user_id = uuid.UUID(claims.subject)
        except ValueError:
            raise AuthenticationError("malformed token subject", code="invalid_token") from None
        # One round trip per request, every request (a revocation or a disabled account
        # counts at once): the user's columns this check reads and whether this token was
        # revoked, as plain rows (no ORM object to build).
        query = (
            select(
                User.id,
                User.username,
                User.role,
                User.is_active,
                User.token_generation,
                RevokedToken.id.label("revoked"),
            )
            .outerjoin(RevokedToken, RevokedToken.jti == claims.jti)
            .where(User.id == user_id)
        )
        async with connection.app.state.session_factory() as session:
            user = (await session.execute(query)).first()
        revoked = user.revoked if user is not None else None
        if user is None or not user.is_active:
            raise AuthenticationError("account is disabled or unknown", code="invalid_token")
        if revoked is not None:
            raise AuthenticationError("token has been revoked", code="token_revoked")
        if claims.generation != user.token_generation:
            # A password change, disable, re-enable or role change since it was issued.
            raise AuthenticationError(
                "the account changed since the token was issued; log in again",
                code="token_revoked",
            )
        if user.role != claims.role:
            raise AuthenticationError(
                "role changed since the token was issued", code="invalid_token"
            )
        auth_user = AuthUser(
            id=user.id,
            username=user.username,
            role=user.role,
            token_jti=claims.jti,
            token_expires_at=claims.expires_at,
        )
        return AuthenticationResult(user=auth_user, auth=claims)
