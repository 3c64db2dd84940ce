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

from control.db.models import Role
from control.errors import AuthenticationError

ISSUER = "medvision"
ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says about its bearer."""

    subject: str
    username: str
    role: Role
    token_type: TokenType
    jti: str
    expires_at: int
    #: The user's ``token_generation`` when the token was issued; a password change, disable,
    #: re-enable or role change bumps the user's, which ends every token issued before it.
    generation: int = 0


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

    def issue(
        self,
        subject: str,
        username: str,
        role: str,
        token_type: TokenType,
        generation: int = 0,
    ) -> IssuedToken:
        """A signed token of ``token_type`` for the user, with a fresh id and the configured TTL.

        ``generation`` is the user's token generation now (see ``TokenClaims.generation``).
        """
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
            "gen": generation,
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

        Unsigned (``alg: none``), other algorithms, a wrong key, tampering, expiry, a token of
        the other type and claims of the wrong shape (a role that is not a role, a generation
        that is not a number) are all rejected. Tokens issued before generations existed carry
        no ``gen`` and count as generation 0.
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
        generation = claims.get("gen", 0)
        try:
            # A signed token is ours, but a claim of the wrong shape (a key that leaked into an
            # older or foreign issuer, a bug) must still end in 401, never in a crash later.
            role = Role(claims["role"])
            if not isinstance(generation, int) or isinstance(generation, bool):
                raise ValueError("gen")
            return TokenClaims(
                subject=str(claims["sub"]),
                username=str(claims.get("name", "")),
                role=role,
                token_type=expected_type,
                jti=str(claims["jti"]),
                expires_at=int(claims["exp"]),
                generation=generation,
            )
        except (ValueError, TypeError):
            raise AuthenticationError("malformed token claims", code="invalid_token") from None
