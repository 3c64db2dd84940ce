"""Creating and changing user accounts."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Role, User
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.domain.auth.passwords import hash_password, password_problem
from control.errors import ConflictError, InvalidInputError, NotFoundError


def _check_password(password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise InvalidInputError(problem, code="weak_password")


async def create_user(
    session: AsyncSession,
    username: str,
    password: str,
    role: Role,
    actor: Actor,
    full_name: str | None = None,
) -> User:
    """A new active account with an Argon2 password hash; ConflictError if the name is taken."""
    _check_password(password)
    if await session.scalar(select(User.id).where(User.username == username)):
        raise ConflictError(f"user {username!r} already exists", code="username_taken")
    user = User(
        username=username, password_hash=hash_password(password), role=role, full_name=full_name
    )
    session.add(user)
    await session.flush()
    await chain.append(
        session,
        "user.created",
        actor,
        target_type="user",
        target_id=str(user.id),
        details={"username": username, "role": role.value},
    )
    await session.commit()
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user with ``user_id``; NotFoundError otherwise."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id} not found", code="user_not_found")
    return user


async def update_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    actor: Actor,
    *,
    role: Role | None = None,
    full_name: str | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> User:
    """Apply the given changes; each change is audited (passwords by fact, not value)."""
    user = await get_user(session, user_id)
    changes: dict[str, object] = {}
    if role is not None and role != user.role:
        changes["role"] = role.value
        user.role = role
    if full_name is not None and full_name != user.full_name:
        changes["full_name"] = "changed"
        user.full_name = full_name
    if is_active is not None and is_active != user.is_active:
        changes["is_active"] = is_active
        user.is_active = is_active
    if password is not None:
        _check_password(password)
        user.password_hash = hash_password(password)
        changes["password"] = "changed"
    if changes:
        await chain.append(
            session,
            "user.updated",
            actor,
            target_type="user",
            target_id=str(user.id),
            details=changes,
        )
    await session.commit()
    return user
