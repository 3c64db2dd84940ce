"""The authenticated caller as seen by route handlers and guards."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from control.db.models import Role


@dataclass(frozen=True)
class AuthUser:
    """A verified bearer: the user behind an access token that is valid right now."""

    id: uuid.UUID
    username: str
    role: Role
    token_jti: str
    token_expires_at: int
