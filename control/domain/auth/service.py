"""OAuth2 grants (password, client credentials, refresh) and token revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
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


class AuthService:
    """Issues, refreshes and revokes tokens; every outcome is audited."""

    def __init__(self, session: AsyncSession, codec: TokenCodec, throttle: LoginThrottle) -> None:
        self.session = session
        self.codec = codec
        self.throttle = throttle

    async def _fail(self, actor: Actor, username: str, reason: str, error: MedVisionError) -> None:
        await chain.append(
            self.session,
            "auth.login_failed",
            Actor(username, None, actor.client_ip, actor.request_id),
            outcome="failure",
            details={"reason": reason},
        )
        await self.session.commit()
        raise error

    async def _authenticate(
        self, username: str, secret: str, actor: Actor, *, service_account: bool
    ) -> User:
        if await self.throttle.is_blocked(username, actor.client_ip):
            await self._fail(
                actor,
                username,
                "rate_limited",
                RateLimitedError("too many failed logins; try again later", code="rate_limited"),
            )
        user = await self.session.scalar(select(User).where(User.username == username))
        valid = verify_password(secret, user.password_hash if user else None)
        if not valid or user is None or not user.is_active:
            await self.throttle.record_failure(username, actor.client_ip)
            reason = "bad_credentials" if user is None or not valid else "account_disabled"
            error = (
                OAuthError("invalid client credentials", code="invalid_client", status_code=401)
                if service_account
                else OAuthError("invalid username or password", code="invalid_grant")
            )
            await self._fail(actor, username, reason, error)
            raise AssertionError("unreachable")
        is_integration = user.role == Role.INTEGRATION
        if service_account != is_integration:
            grant = "client_credentials" if is_integration else "password"
            await self._fail(
                actor,
                username,
                "wrong_grant_for_role",
                OAuthError(f"this account must use the {grant} grant", code="unauthorized_client"),
            )
        await self.throttle.reset(username)
        return user

    async def _issue(self, user: User, actor: Actor, grant: str) -> TokenResponse:
        access = self.codec.issue(str(user.id), user.username, user.role.value, "access")
        refresh = self.codec.issue(str(user.id), user.username, user.role.value, "refresh")
        self.session.add(
            RefreshToken(jti=refresh.jti, user_id=user.id, expires_at=_utc(refresh.expires_at))
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

        Presenting an already-rotated refresh token revokes every refresh token of that user.
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
            await self._fail(
                actor,
                claims.username,
                "refresh_unknown",
                OAuthError("refresh token is not valid", code="invalid_grant"),
            )
            raise AssertionError("unreachable")
        if stored.revoked_at is not None:
            await self.session.execute(
                update(RefreshToken)
                .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            await self._fail(
                actor,
                user.username,
                "refresh_reuse",
                OAuthError("refresh token was already used", code="invalid_grant"),
            )
        stored.revoked_at = datetime.now(UTC)
        return await self._issue(user, actor, "refresh_token")

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
