"""JWT access and refresh tokens (HS256 only, via joserfc — authlib's JOSE implementation)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

from control.errors import AuthenticationError

ISSUER = "medvision"
ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says about its bearer."""

    subject: str
    username: str
    role: str
    token_type: TokenType
    jti: str
    expires_at: int


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: int


class TokenCodec:
    """Issues and verifies MedVision JWTs. Only HS256 with our key is ever accepted."""

    def __init__(self, key: bytes, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._key = OctKey.import_key(key)
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s

    def issue(self, subject: str, username: str, role: str, token_type: TokenType) -> IssuedToken:
        """A signed token of ``token_type`` for the user, with a fresh id and the configured TTL."""
        now = int(time.time())
        ttl = self.access_ttl_s if token_type == "access" else self.refresh_ttl_s
        jti = secrets.token_hex(16)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "name": username,
            "role": role,
            "typ": token_type,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        token = jwt.encode(
            {"alg": ALGORITHM, "typ": "JWT"}, claims, self._key, algorithms=[ALGORITHM]
        )
        return IssuedToken(token=token, jti=jti, expires_at=now + ttl)

    def verify(self, token: str, expected_type: TokenType) -> TokenClaims:
        """The claims of a valid, unexpired token of ``expected_type``, else AuthenticationError.

        Unsigned (``alg: none``), other algorithms, a wrong key, tampering, expiry and a token
        of the other type are all rejected.
        """
        try:
            decoded = jwt.decode(token, self._key, algorithms=[ALGORITHM])
            if decoded.header.get("alg") != ALGORITHM:
                raise AuthenticationError("token algorithm not accepted", code="invalid_token")
            registry = JWTClaimsRegistry(
                leeway=5,
                iss={"essential": True, "value": ISSUER},
                sub={"essential": True},
                jti={"essential": True},
                exp={"essential": True},
                typ={"essential": True, "value": expected_type},
                role={"essential": True},
            )
            registry.validate(decoded.claims)
        except JoseError as exc:
            code = "token_expired" if exc.error == "expired_token" else "invalid_token"
            raise AuthenticationError(f"invalid token: {exc.error}", code=code) from None
        except (ValueError, TypeError, KeyError):
            raise AuthenticationError("malformed token", code="invalid_token") from None
        claims = decoded.claims
        return TokenClaims(
            subject=str(claims["sub"]),
            username=str(claims.get("name", "")),
            role=str(claims["role"]),
            token_type=expected_type,
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )
