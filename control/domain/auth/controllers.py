"""HTTP endpoints for tokens: the OAuth2 token endpoint and logout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from control.domain.auth.guards import ANY_ROLE, requires
from control.domain.auth.identity import AuthUser
from control.domain.auth.service import AuthService, OAuthError, TokenResponse
from control.http.context import actor_from_request


@dataclass
class TokenRequest:
    """RFC 6749 token request (form encoded)."""

    grant_type: str
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    scope: str | None = None


@dataclass
class RevokeRequest:
    """Logout: the refresh token to revoke along with the presented access token (optional)."""

    token: str | None = None


FormBody = Body(media_type=RequestEncodingType.URL_ENCODED)


def _service(session: AsyncSession, state: State) -> AuthService:
    return AuthService(session, state.token_codec, state.login_throttle)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/token", operation_id="issueToken", status_code=200, security=[])
    async def token(
        self,
        request: Request,  # type: ignore[type-arg]
        db_session: AsyncSession,
        state: State,
        data: Annotated[TokenRequest, FormBody],
    ) -> TokenResponse:
        """OAuth2 token endpoint: password, client_credentials and refresh_token grants."""
        service = _service(db_session, state)
        actor = actor_from_request(request)
        if data.grant_type == "password":
            if not data.username or not data.password:
                raise OAuthError("username and password are required", code="invalid_request")
            return await service.password_grant(data.username, data.password, actor)
        if data.grant_type == "client_credentials":
            if not data.client_id or not data.client_secret:
                raise OAuthError("client_id and client_secret are required", code="invalid_request")
            return await service.client_credentials_grant(data.client_id, data.client_secret, actor)
        if data.grant_type == "refresh_token":
            if not data.refresh_token:
                raise OAuthError("refresh_token is required", code="invalid_request")
            return await service.refresh_grant(data.refresh_token, actor)
        raise OAuthError(
            f"grant_type {data.grant_type!r} is not supported", code="unsupported_grant_type"
        )

    @post("/revoke", operation_id="revokeToken", status_code=204, guards=[requires(*ANY_ROLE)])
    async def revoke(
        self,
        request: Request[AuthUser, object, State],
        db_session: AsyncSession,
        state: State,
        data: Annotated[RevokeRequest, FormBody],
    ) -> None:
        """Log out: revoke the presented access token and, optionally, a refresh token."""
        await _service(db_session, state).revoke(
            request.user, data.token, actor_from_request(request)
        )
