"""Request and response shapes for user management."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from control.db.models import Role, User

#: ``users.full_name`` is VARCHAR(255); a longer value failed in PostgreSQL with a 500.
FullName = Annotated[str, msgspec.Meta(max_length=255)]
Username = Annotated[str, msgspec.Meta(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: str
    role: Role
    full_name: FullName | None = None


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Role | None = None
    full_name: FullName | None = None
    is_active: bool | None = None
    password: str | None = None


class UserOut(msgspec.Struct):
    id: uuid.UUID
    username: str
    role: Role
    full_name: str | None
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            role=user.role,
            full_name=user.full_name,
            is_active=user.is_active,
            created_at=user.created_at,
        )
