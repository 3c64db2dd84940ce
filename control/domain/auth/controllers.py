"""HTTP endpoints for tokens: the OAuth2 token endpoint and logout."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Any

from litestar import Controller, Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.domain.audit.chain import Actor
from control.domain.auth.guards import ANY_ROLE, requires
from control.domain.auth.identity import AuthUser
from control.domain.auth.service import (
    USERNAME_MAX_CHARS,
    AuthService,
    OAuthError,
    TokenResponse,
    audit_failed_login,
)
from control.errors import MedVisionError
from control.http.context import actor_from_request
from control.http.errors import http_error

#: The whole form of a token or revoke request. The largest legitimate one (a refresh token
#: of ~600 bytes, or a long password) is far below; the limit is checked while the body
#: streams in, before any of it is parsed, so a 200 MB "username" is never held in memory.
TOKEN_BODY_MAX_BYTES = 16 * 1024
#: The token endpoint's path (every refused request to it is an audited failed login).
TOKEN_PATH = "/api/auth/token"

#: Each field's limit in characters; a longer value is refused (and audited, cut short).
#: Passwords may be long passphrases, but Argon2 hashes whatever it is given: 1024 bounds the
#: work one request can cause. A refresh token is a JWT of a few hundred characters.
FIELD_MAX_CHARS = {
    "grant_type": 32,
    "username": USERNAME_MAX_CHARS,
    "password": 1024,
    "client_id": USERNAME_MAX_CHARS,
    "client_secret": 1024,
    "refresh_token": 4096,
    "scope": 256,
    "token": 4096,
}


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


def _field_problem(data: TokenRequest | RevokeRequest) -> tuple[str, str] | None:
    """The first field that is too long, or (a name) holds control characters: (field, why)."""
    for field in fields(data):
        value = getattr(data, field.name)
        if value is None:
            continue
        if len(value) > FIELD_MAX_CHARS[field.name]:
            return (
                field.name,
                f"{field.name} is longer than {FIELD_MAX_CHARS[field.name]} characters",
            )
        if field.name in ("username", "client_id") and not value.isprintable():
            return field.name, f"{field.name} contains control characters"
    return None


async def _audit_oversized(session_factory: async_sessionmaker[AsyncSession], actor: Actor) -> None:
    async with session_factory() as session:
        await audit_failed_login(
            session, actor, None, "request_too_large", {"limit_bytes": TOKEN_BODY_MAX_BYTES}
        )


async def audit_refused_token_request(scope: Scope, error: MedVisionError) -> None:
    """A token request the input guard refused (NUL bytes, a body over its limit) is a failed
    login all the same: audited with the guard's code and no username (none was read)."""
    request: Request[Any, Any, Any] = Request(scope)
    async with request.app.state.session_factory() as session:
        await audit_failed_login(session, actor_from_request(request), None, error.code)


def _token_request_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """A token request refused before its handler ran; one over the size limit is a failed
    login nonetheless and is audited (after the answer is sent, with no username: none was
    read)."""
    response = http_error(request, exc)
    if exc.status_code == 413:
        response.background = BackgroundTask(
            _audit_oversized, request.app.state.session_factory, actor_from_request(request)
        )
    return response


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post(
        "/token",
        operation_id="issueToken",
        status_code=200,
        security=[],
        request_max_body_size=TOKEN_BODY_MAX_BYTES,
        exception_handlers={413: _token_request_error},
    )
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
        if problem := _field_problem(data):
            field, message = problem
            await service.fail(
                actor,
                data.username or data.client_id,
                "invalid_request",
                OAuthError(message, code="invalid_request"),
                details={"field": field},
            )
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

    @post(
        "/revoke",
        operation_id="revokeToken",
        status_code=204,
        guards=[requires(*ANY_ROLE)],
        request_max_body_size=TOKEN_BODY_MAX_BYTES,
    )
    async def revoke(
        self,
        request: Request[AuthUser, object, State],
        db_session: AsyncSession,
        state: State,
        data: Annotated[RevokeRequest, FormBody],
    ) -> None:
        """Log out: revoke the presented access token and, optionally, a refresh token."""
        if problem := _field_problem(data):
            raise OAuthError(problem[1], code="invalid_request")
        await _service(db_session, state).revoke(
            request.user, data.token, actor_from_request(request)
        )
