"""Creating and changing user accounts."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
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
    """A new active account with an Argon2 password hash; ConflictError if the name is taken
    in any case ("Rad1" when "rad1" exists): the database's unique index on the lower-cased
    name decides, so two concurrent creations cannot both succeed."""
    _check_password(password)
    taken = ConflictError(f"user {username!r} already exists", code="username_taken")
    if await session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise taken
    user = User(
        username=username, password_hash=hash_password(password), role=role, full_name=full_name
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise taken from None
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


async def _lock_for_admin_change(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user, read fresh, with every active admin's row locked (PostgreSQL), in id order.

    Every change that could remove an admin takes these locks first, in the same order, so
    two such changes run one after the other and the second sees the first's result (two
    admins demoting each other: the second finds itself the last admin). SQLite needs no
    lock: its transactions take the write lock when they begin (control.db.engine).
    """
    await session.execute(
        select(User.id)
        .where(User.role == Role.ADMIN, User.is_active.is_(True))
        .order_by(User.id)
        .with_for_update()
    )
    user = await session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFoundError(f"user {user_id} not found", code="user_not_found")
    return user


async def _other_active_admins(session: AsyncSession, user_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN, User.is_active.is_(True), User.id != user_id)
        )
    ) or 0


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
    """Apply the given changes; each change is audited (passwords by fact, not value).

    A password change, disable, re-enable or role change ends every token issued before it
    (the user's token generation moves on). The last active admin cannot be demoted or
    disabled (ConflictError ``last_admin``), also when two requests race.
    """
    if role is not None or is_active is not None:
        user = await _lock_for_admin_change(session, user_id)
        removes_admin = (
            user.role == Role.ADMIN
            and user.is_active
            and ((role is not None and role != Role.ADMIN) or is_active is False)
        )
        if removes_admin and await _other_active_admins(session, user_id) == 0:
            raise ConflictError(
                "this is the last active admin; make another admin first", code="last_admin"
            )
    else:
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
    if changes.keys() - {"full_name"}:
        # In SQL (generation + 1), so two concurrent changes each move it on.
        user.token_generation = User.token_generation + 1
        changes["sessions_ended"] = True
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
