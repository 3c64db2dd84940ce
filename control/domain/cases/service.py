"""Worklist queries and case assignment."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defaultload
from sqlalchemy.orm.exc import StaleDataError

from control.db.models import PRIORITY_RANK, Case, CaseStatus, Priority, Role, Study, User
from control.domain.audit import chain
from control.domain.audit.chain import Actor
from control.domain.auth.identity import AuthUser
from control.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError

MAX_REASON_CHARS = 2000

SortKey = Literal["priority", "created_at", "updated_at", "status", "modality"]
_SORT_COLUMNS = {
    "priority": Case.priority_rank,
    "created_at": Case.created_at,
    "updated_at": Case.updated_at,
    "status": Case.status,
    "modality": Case.modality,
}


@dataclass(frozen=True)
class WorklistFilter:
    """What the worklist shows; ``assignee`` is a user id, ``"me"`` or ``"unassigned"``."""

    status: list[CaseStatus] | None = None
    assignee: str | None = None
    modality: str | None = None
    priority: Priority | None = None
    received_from: date | None = None
    received_to: date | None = None


SelectT = TypeVar("SelectT", bound=Select[Any])


def visible_to(query: SelectT, user: AuthUser) -> SelectT:
    """Radiologists see the unassigned pool and their own cases; admins see everything."""
    if user.role == Role.RADIOLOGIST:
        return query.where(or_(Case.assignee_id.is_(None), Case.assignee_id == user.id))
    return query


def _filtered(
    query: Select[tuple[Case]], user: AuthUser, filters: WorklistFilter
) -> Select[tuple[Case]]:
    if filters.status:
        query = query.where(Case.status.in_(filters.status))
    if filters.assignee == "me":
        query = query.where(Case.assignee_id == user.id)
    elif filters.assignee == "unassigned":
        query = query.where(Case.assignee_id.is_(None))
    elif filters.assignee:
        try:
            query = query.where(Case.assignee_id == uuid.UUID(filters.assignee))
        except ValueError:
            raise InvalidInputError(
                "assignee must be a user id, 'me' or 'unassigned'", code="invalid_filter"
            ) from None
    if filters.modality:
        query = query.where(Case.modality == filters.modality.upper())
    if filters.priority:
        query = query.where(Case.priority == filters.priority)
    if filters.received_from:
        start = datetime.combine(filters.received_from, time.min, tzinfo=UTC)
        query = query.where(Case.created_at >= start)
    # The last calendar day has no next day to stop before: no upper bound is needed then.
    if filters.received_to and filters.received_to < date.max:
        end = datetime.combine(filters.received_to + timedelta(days=1), time.min, tzinfo=UTC)
        query = query.where(Case.created_at < end)
    return visible_to(query, user)


async def list_cases(
    session: AsyncSession,
    user: AuthUser,
    filters: WorklistFilter,
    *,
    sort: SortKey = "priority",
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Case], int]:
    """One page of the caller's worklist and the total number of matching cases."""
    query = _filtered(select(Case), user, filters)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = _SORT_COLUMNS[sort]
    order = column.desc() if descending else column.asc()
    page = query.order_by(order, Case.created_at.asc(), Case.id).limit(limit).offset(offset)
    return list((await session.scalars(page)).unique().all()), total


async def get_case(
    session: AsyncSession,
    case_id: uuid.UUID,
    user: AuthUser,
    *,
    for_claim: bool = False,
    with_images: bool = True,
) -> Case:
    """The case if it exists and the caller may see it; NotFoundError otherwise.

    ``for_claim`` also finds cases another radiologist holds, so that a claim that lost the
    race answers 409 ``case_already_assigned`` rather than 404. Without ``with_images`` the
    study's series and instances are not loaded (a request about one image of a large study
    need not read them all) and reading ``case.study.series`` raises.
    """
    query = select(Case).where(Case.id == case_id)
    if not with_images:
        query = query.options(defaultload(Case.study).raiseload(Study.series))
    if not for_claim:
        query = visible_to(query, user)
    case = (await session.scalars(query)).unique().one_or_none()
    if case is None:
        raise NotFoundError(f"case {case_id} not found", code="case_not_found")
    return case


async def record_view(session: AsyncSession, case: Case, actor: Actor) -> None:
    """Audit that the actor opened the case's study."""
    await chain.append(
        session,
        "study.viewed",
        actor,
        target_type="study",
        target_id=str(case.study_id),
        details={"case_id": str(case.id)},
    )
    await session.commit()


async def _radiologist(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None or not user.is_active or user.role != Role.RADIOLOGIST:
        raise InvalidInputError("assignee must be an active radiologist", code="invalid_assignee")
    return user


def check_version(case: Case, version: int) -> None:
    """409 ``stale_version`` unless ``version`` is the case's current version."""
    if case.version != version:
        raise ConflictError(
            "the case changed since you loaded it; reload and try again",
            code="stale_version",
            detail={"current_version": case.version},
        )


def require_open(case: Case) -> None:
    """409 ``case_signed_off`` when the case is signed off (read-only)."""
    if case.status == CaseStatus.SIGNED_OFF:
        raise ConflictError("a signed-off case is read-only", code="case_signed_off")


async def update_case(
    session: AsyncSession,
    case: Case,
    actor: Actor,
    *,
    version: int,
    assignee_id: uuid.UUID | None,
    change_assignee: bool,
    priority: Priority | None,
) -> Case:
    """Assign, reassign, unassign or reprioritise; every change is audited."""
    check_version(case, version)
    require_open(case)
    details: dict[str, object] = {}
    if change_assignee and assignee_id != case.assignee_id:
        previous = case.assignee_id
        case.assignee = await _radiologist(session, assignee_id) if assignee_id else None
        case.assignee_id = assignee_id
        details["assignee_from"] = str(previous) if previous else None
        details["assignee_to"] = str(assignee_id) if assignee_id else None
    if priority is not None and priority != case.priority:
        details["priority_from"] = case.priority.value
        case.priority = priority
        case.priority_rank = PRIORITY_RANK[priority]
        details["priority_to"] = priority.value
    if details:
        action = "case.assigned" if "assignee_to" in details else "case.updated"
        await chain.append(
            session, action, actor, target_type="case", target_id=str(case.id), details=details
        )
    await session.commit()
    return case


async def claim_case(session: AsyncSession, case: Case, user: AuthUser, actor: Actor) -> Case:
    """The calling radiologist takes an unassigned case from the pool."""
    if case.assignee_id == user.id:
        return case
    if case.assignee_id is not None:
        raise ConflictError("the case is already assigned", code="case_already_assigned")
    require_open(case)
    case.assignee = await _radiologist(session, user.id)
    case.assignee_id = user.id
    await chain.append(
        session,
        "case.assigned",
        actor,
        target_type="case",
        target_id=str(case.id),
        details={"assignee_from": None, "assignee_to": str(user.id), "claimed": True},
    )
    await session.commit()
    return case


def require_holder(case: Case, user: AuthUser) -> None:
    require_open(case)
    if user.role != Role.RADIOLOGIST or case.assignee_id != user.id:
        raise PermissionDeniedError(
            "only the radiologist who holds the case may decide on it; claim it first",
            code="not_case_holder",
        )


def clean_text(value: str | None, field: str) -> str | None:
    text = (value or "").strip()
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInputError(
            f"{field} must be at most {MAX_REASON_CHARS} characters", code="text_too_long"
        )
    return text or None


@asynccontextmanager
async def concurrent_change_conflicts(session: AsyncSession) -> AsyncIterator[None]:
    """Turn a write that collides with a concurrent one into a 409 ``decision_conflict``.

    The collision (the decision's sequence, the case's version) surfaces at the first flush,
    and the audit append flushes: the block covers it and the commit.
    """
    try:
        yield
    except (IntegrityError, StaleDataError):
        await session.rollback()
        raise ConflictError(
            "a concurrent change to this case won; reload and try again",
            code="decision_conflict",
        ) from None
