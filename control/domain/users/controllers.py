"""User management endpoints (admins) and the caller's own profile."""

from __future__ import annotations

import uuid

from litestar import Controller, Request, get, patch, post
from litestar.datastructures import State
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Role, User
from control.domain.auth.guards import ANY_ROLE, requires
from control.domain.auth.identity import AuthUser
from control.domain.users import service
from control.domain.users.schemas import UserCreate, UserOut, UserUpdate
from control.errors import InvalidInputError
from control.http.context import actor_from_request


class UserController(Controller):
    path = "/api/users"
    tags = ["users"]

    @get("/me", operation_id="getCurrentUser", guards=[requires(*ANY_ROLE)])
    async def me(
        self, request: Request[AuthUser, object, State], db_session: AsyncSession
    ) -> UserOut:
        """The account behind the presented token."""
        return UserOut.of(await service.get_user(db_session, request.user.id))

    @get("/", operation_id="listUsers", guards=[requires(Role.ADMIN)])
    async def list_users(self, db_session: AsyncSession, role: Role | None = None) -> list[UserOut]:
        """Every account, optionally of one role, by username."""
        query = select(User).order_by(User.username)
        if role is not None:
            query = query.where(User.role == role)
        return [UserOut.of(user) for user in await db_session.scalars(query)]

    @post("/", operation_id="createUser", guards=[requires(Role.ADMIN)])
    async def create_user(
        self,
        request: Request[AuthUser, object, State],
        db_session: AsyncSession,
        data: UserCreate,
    ) -> UserOut:
        """Create an account (any role); the password is stored only as an Argon2 hash."""
        user = await service.create_user(
            db_session,
            data.username,
            data.password,
            data.role,
            actor_from_request(request),
            data.full_name,
        )
        return UserOut.of(user)

    @get("/{user_id:uuid}", operation_id="getUser", guards=[requires(Role.ADMIN)])
    async def get_user(self, db_session: AsyncSession, user_id: uuid.UUID) -> UserOut:
        """One account."""
        return UserOut.of(await service.get_user(db_session, user_id))

    @patch("/{user_id:uuid}", operation_id="updateUser", guards=[requires(Role.ADMIN)])
    async def update_user(
        self,
        request: Request[AuthUser, object, State],
        db_session: AsyncSession,
        user_id: uuid.UUID,
        data: UserUpdate,
    ) -> UserOut:
        """Change role, name, active flag or password; admins cannot lock themselves out."""
        if user_id == request.user.id and (
            (data.role is not None and data.role != Role.ADMIN) or data.is_active is False
        ):
            raise InvalidInputError(
                "admins cannot demote or disable their own account", code="self_lockout"
            )
        user = await service.update_user(
            db_session,
            user_id,
            actor_from_request(request),
            role=data.role,
            full_name=data.full_name,
            is_active=data.is_active,
            password=data.password,
        )
        return UserOut.of(user)
