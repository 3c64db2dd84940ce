"""OAuth2 grants (password, client credentials, refresh) and token revocation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import RefreshToken, RevokedToken, Role, User
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.domain.auth.identity import AuthUser
from control.domain.auth.passwords import verify_password
from control.domain.auth.throttle import LoginThrottle
from control.domain.auth.tokens import TokenCodec
from control.errors import AuthenticationError, MedVisionError, RateLimitedError


class OAuthError(MedVisionError):
    """An RFC 6749 token-endpoint error; the body carries both ``code`` and ``error``."""

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body["error"] = self.code
        body["error_description"] = self.message
        return body


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None
    role: str | None = None


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


#: The longest username (or client_id) that can exist: the column's width.
USERNAME_MAX_CHARS = 64


def audit_name(value: str) -> str:
    """``value`` as it may be written to the audit log for a login that failed: at most
    ``USERNAME_MAX_CHARS`` characters (longer ones cut, marked with "…"), control
    characters (NUL included, which PostgreSQL text cannot hold) replaced by "?"."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in value[: USERNAME_MAX_CHARS + 1])
    if len(printable) > USERNAME_MAX_CHARS:
        return printable[: USERNAME_MAX_CHARS - 1] + "\u2026"
    return printable


async def audit_failed_login(
    session: AsyncSession,
    actor: Actor,
    username: str | None,
    reason: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append and commit an ``auth.login_failed`` entry; the name is bounded by ``audit_name``."""
    await chain.append(
        session,
        "auth.login_failed",
        Actor(audit_name(username) if username else None, None, actor.client_ip, actor.request_id),
        outcome="failure",
        details={"reason": reason, **(details or {})},
    )
    await session.commit()


class AuthService:
    """Issues, refreshes and revokes tokens; every outcome is audited."""

    def __init__(self, session: AsyncSession, codec: TokenCodec, throttle: LoginThrottle) -> None:
        self.session = session
        self.codec = codec
        self.throttle = throttle

    async def fail(
        self,
        actor: Actor,
        username: str | None,
        reason: str,
        error: MedVisionError,
        details: dict[str, Any] | None = None,
    ) -> NoReturn:
        """Audit a failed login or token request, committing that entry alone (whatever else
        the session did is dropped), and raise ``error``."""
        await self.session.rollback()
        await audit_failed_login(self.session, actor, username, reason, details)
        raise error

    async def _authenticate(
        self, username: str, secret: str, actor: Actor, *, service_account: bool
    ) -> User:
        # The attempt is counted before the password is looked at, atomically, so parallel
        # guesses cannot all slip under the limit (control.domain.auth.throttle).
        attempt = await self.throttle.attempt(username, actor.client_ip)
        if attempt.blocked:
            await self.fail(
                actor,
                username,
                "rate_limited",
                RateLimitedError("too many failed logins; try again later", code="rate_limited"),
            )
        user = await self.session.scalar(
            select(User).where(func.lower(User.username) == username.lower())
        )
        valid = verify_password(secret, user.password_hash if user else None)
        if not valid or user is None or not user.is_active:
            reason = "bad_credentials" if user is None or not valid else "account_disabled"
            error = (
                OAuthError("invalid client credentials", code="invalid_client", status_code=401)
                if service_account
                else OAuthError("invalid username or password", code="invalid_grant")
            )
            await self.fail(actor, username, reason, error)
        is_integration = user.role == Role.INTEGRATION
        if service_account != is_integration:
            grant = "client_credentials" if is_integration else "password"
            await self.fail(
                actor,
                username,
                "wrong_grant_for_role",
                OAuthError(f"this account must use the {grant} grant", code="unauthorized_client"),
            )
        await self.throttle.succeeded(attempt)
        return user

    async def _issue(
        self, user: User, actor: Actor, grant: str, family_id: str | None = None
    ) -> TokenResponse:
        """Access and refresh tokens under the user's current generation; the refresh token
        joins ``family_id`` (a refresh) or starts a family (a login)."""
        subject, name, role, generation = (
            str(user.id),
            user.username,
            user.role.value,
            user.token_generation,
        )
        access = self.codec.issue(subject, name, role, "access", generation)
        refresh = self.codec.issue(subject, name, role, "refresh", generation)
        self.session.add(
            RefreshToken(
                jti=refresh.jti,
                user_id=user.id,
                family_id=family_id or secrets.token_hex(16),
                expires_at=_utc(refresh.expires_at),
            )
        )
        await chain.append(
            self.session,
            "auth.token_issued",
            Actor(user.username, user.role.value, actor.client_ip, actor.request_id),
            target_type="user",
            target_id=str(user.id),
            details={"grant": grant, "access_jti": access.jti, "refresh_jti": refresh.jti},
        )
        await self.session.commit()
        return TokenResponse(
            access_token=access.token,
            token_type="Bearer",
            expires_in=self.codec.access_ttl_s,
            refresh_token=refresh.token,
            role=user.role.value,
        )

    async def password_grant(self, username: str, password: str, actor: Actor) -> TokenResponse:
        """Tokens for a person who proves their password."""
        user = await self._authenticate(username, password, actor, service_account=False)
        return await self._issue(user, actor, "password")

    async def client_credentials_grant(
        self, client_id: str, client_secret: str, actor: Actor
    ) -> TokenResponse:
        """Tokens for an integration (PACS/RIS) service account."""
        user = await self._authenticate(client_id, client_secret, actor, service_account=True)
        return await self._issue(user, actor, "client_credentials")

    async def refresh_grant(self, refresh_token: str, actor: Actor) -> TokenResponse:
        """New tokens for an unused refresh token; the old one is revoked (rotation).

        Exactly one presentation of a refresh token wins, also when several arrive at once:
        the token is spent by a conditional UPDATE (``... WHERE revoked_at IS NULL``), which
        PostgreSQL runs under the row's lock and re-checks after a concurrent writer commits,
        and SQLite runs inside its single write transaction. Every other presentation, a
        replay or a concurrent twin (the two cannot be told apart), is reuse: it revokes the
        token's whole family, the winner's new token included, so a stolen token that races
        its owner ends both sessions rather than keeping one for the thief.
        """
        try:
            claims = self.codec.verify(refresh_token, "refresh")
        except AuthenticationError:
            raise OAuthError("refresh token is invalid or expired", code="invalid_grant") from None
        stored = await self.session.scalar(
            select(RefreshToken).where(RefreshToken.jti == claims.jti)
        )
        user = await self.session.get(User, stored.user_id) if stored else None
        if stored is None or user is None or not user.is_active:
            await self.fail(
                actor,
                claims.username,
                "refresh_unknown",
                OAuthError("refresh token is not valid", code="invalid_grant"),
            )
        if claims.generation != user.token_generation:
            await self.fail(
                actor,
                user.username,
                "refresh_stale",
                OAuthError(
                    "the account changed since this token was issued; log in again",
                    code="invalid_grant",
                ),
            )
        now = datetime.now(UTC)
        spent = cast(
            "CursorResult[Any]",
            await self.session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == stored.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            ),
        )
        if spent.rowcount != 1:
            family_id, username = stored.family_id, user.username
            await self.session.rollback()
            await self.session.execute(
                update(RefreshToken)
                .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
            await self.session.commit()
            await self.fail(
                actor,
                username,
                "refresh_reuse",
                OAuthError("refresh token was already used", code="invalid_grant"),
                details={"family_revoked": True},
            )
        return await self._issue(user, actor, "refresh_token", family_id=stored.family_id)

    async def revoke(self, user: AuthUser, refresh_token: str | None, actor: Actor) -> None:
        """Log out: the presented access token and, if given, the refresh token stop working."""
        self.session.add(RevokedToken(jti=user.token_jti, expires_at=_utc(user.token_expires_at)))
        if refresh_token:
            try:
                claims = self.codec.verify(refresh_token, "refresh")
            except AuthenticationError:
                claims = None
            if claims is not None and claims.subject == str(user.id):
                await self.session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.jti == claims.jti)
                    .values(revoked_at=datetime.now(UTC))
                )
        await chain.append(
            self.session,
            "auth.logout",
            actor,
            target_type="user",
            target_id=str(user.id),
            details={"access_jti": user.token_jti},
        )
        await self.session.commit()
