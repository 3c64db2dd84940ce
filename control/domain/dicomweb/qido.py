"""QIDO-RS (PS3.18 10.6) searches: a parsed query (:mod:`.query`) matched in the database,
answered as DICOM JSON.

Matching runs on what the database records of each stored, de-identified study (study,
series and instance UIDs, study date, modalities, pseudonymous patient id, SOP class).
Attributes that de-identification empties (Accession Number, Study ID, Study Time,
Referring Physician, birth date, sex) are empty in every stored header, so they match only a
universal (empty or ``*``) value.

Results carry the attributes PS3.18 lists for each level (those present), plus
``includefield`` ones; attributes only the file holds (Series Number, Instance Number, ...)
come from the representative instance's cached header (:mod:`.headers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from litestar.datastructures import State
from sqlalchemy import ColumnElement, Select, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Case, Instance, Role, Series, Study
from control.dicom.nifti import NIFTI_SOP_CLASS
from control.domain.auth.identity import AuthUser
from control.domain.cases.service import visible_to
from control.domain.dicomweb.headers import instance_header
from control.domain.dicomweb.json_model import Attributes, attribute, resolve_tag, tag_key, vr_of
from control.domain.dicomweb.query import (
    DEFAULTS,
    EMPTIED,
    MODALITIES,
    MODALITY,
    PATIENT_ID,
    PATIENT_NAME,
    SERIES_UID,
    SOP_CLASS,
    SOP_UID,
    STUDY_DATE,
    STUDY_UID,
    Level,
    QidoQuery,
)
from control.errors import InvalidInputError, NotFoundError

__all__ = [
    "SearchResult",
    "require_study",
    "search_instances",
    "search_series",
    "search_studies",
    "visible_studies",
]


def _values(raw: str) -> list[str]:
    """A list match (``a,b`` or ``a\\b``) as its non-empty values."""
    return [item.strip() for item in raw.replace("\\", ",").split(",") if item.strip()]


def _is_universal(raw: str) -> bool:
    return raw.strip() in ("", "*")


def _date(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise InvalidInputError(
            "StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD",
            code="invalid_date_range",
            detail={"value": text[:32]},
        ) from None


def _date_condition(raw: str) -> ColumnElement[bool] | None:
    """The StudyDate match ``raw`` (a date or a range, either end open) as a condition."""
    text = raw.strip()
    if "-" not in text:
        return Study.study_date == _date(text)
    start, _, end = text.partition("-")
    if not start and not end:
        raise InvalidInputError("a date range needs at least one end", code="invalid_date_range")
    conditions = []
    if start:
        conditions.append(Study.study_date >= _date(start))
    if end:
        conditions.append(Study.study_date <= _date(end))
    return conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]


def _wildcard(column: Any, raw: str) -> ColumnElement[bool]:
    """Single-value matching with ``*`` and ``?`` wildcards (PS3.4 C.2.2.2.4)."""
    if "*" not in raw and "?" not in raw:
        return column == raw  # type: ignore[no-any-return]
    escaped = raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = escaped.replace("*", "%").replace("?", "_")
    return column.like(pattern, escape="\\")  # type: ignore[no-any-return]


def visible_studies(user: AuthUser) -> Select[tuple[Any]]:
    """Ids of the DICOM studies ``user`` may read: radiologists those with a case they may
    see (:func:`~control.domain.cases.service.visible_to`), admins and integrations all."""
    query = select(Study.id).where(Study.source_format != "nifti")
    if user.role == Role.RADIOLOGIST:
        query = query.where(Study.id.in_(visible_to(select(Case.study_id), user)))
    return query


def _study_conditions(query: QidoQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for tag, raw in query.matches.items():
        if _is_universal(raw):
            continue
        if tag == STUDY_UID:
            conditions.append(Study.study_uid.in_(_values(raw)))
        elif tag == STUDY_DATE:
            condition = _date_condition(raw)
            if condition is not None:
                conditions.append(condition)
        elif tag == MODALITIES:
            modalities = [value.upper() for value in _values(raw)]
            conditions.append(
                Study.id.in_(select(Series.study_id).where(Series.modality.in_(modalities)))
            )
        elif tag in (PATIENT_ID, PATIENT_NAME):
            conditions.append(_wildcard(Study.pseudo_patient_id, raw.strip()))
        elif tag in EMPTIED:
            conditions.append(false())
    return conditions


def _wanted(query: QidoQuery, level: Level) -> frozenset[int]:
    return DEFAULTS[level] | query.include


def _selected(attributes: Attributes, wanted: frozenset[int], include_all: bool) -> Attributes:
    if include_all:
        return dict(sorted(attributes.items()))
    keys = {tag_key(tag) for tag in wanted}
    return dict(sorted((key, value) for key, value in attributes.items() if key in keys))


@dataclass
class SearchResult:
    """One page of matches, and whether more may exist beyond a default-limited page."""

    datasets: list[Attributes]
    truncated: bool


async def _header_of(state: State, instance: Instance | None) -> Attributes:
    return await instance_header(state, instance) if instance is not None else {}


def _needs_header(query: QidoQuery, level: Level, database_tags: set[str]) -> bool:
    return query.include_all or any(
        tag_key(tag) not in database_tags for tag in _wanted(query, level)
    )


async def _first_instances(
    session: AsyncSession, column: Any, ids: list[Any]
) -> dict[Any, Instance]:
    """The first stored instance (by series, then instance arrival) of each id in ``ids``."""
    rows = await session.execute(
        select(column, Instance)
        .join(Series, Instance.series_id == Series.id)
        .where(column.in_(ids), Instance.sop_class_uid != NIFTI_SOP_CLASS)
        .order_by(Series.created_at, Instance.created_at)
    )
    first: dict[Any, Instance] = {}
    for key, instance in rows.tuples():
        first.setdefault(key, instance)
    return first


def _page(query: QidoQuery, rows: list[Any]) -> tuple[list[Any], bool]:
    """The rows of the page (one extra row was fetched to tell whether more exist)."""
    return rows[: query.limit], query.default_limit and len(rows) > query.limit


async def search_studies(
    session: AsyncSession, state: State, user: AuthUser, query: QidoQuery, base_url: str
) -> SearchResult:
    """Studies matching ``query`` that ``user`` may read, oldest first."""
    statement = (
        select(Study)
        .where(Study.id.in_(visible_studies(user)), *_study_conditions(query))
        .order_by(Study.created_at, Study.id)
        .offset(query.offset)
        .limit(query.limit + 1)
    )
    studies, truncated = _page(query, list((await session.scalars(statement)).all()))
    ids = [study.id for study in studies]
    counts = {
        study_id: (series_count, instance_count)
        for study_id, series_count, instance_count in (
            await session.execute(
                select(
                    Series.study_id,
                    func.count(func.distinct(Series.id)),
                    func.count(Instance.id),
                )
                .join(Instance, Instance.series_id == Series.id, isouter=True)
                .where(Series.study_id.in_(ids))
                .group_by(Series.study_id)
            )
        ).tuples()
    }
    modalities: dict[Any, list[str]] = {}
    for study_id, modality in (
        await session.execute(
            select(Series.study_id, Series.modality)
            .where(Series.study_id.in_(ids))
            .distinct()
            .order_by(Series.modality)
        )
    ).tuples():
        modalities.setdefault(study_id, []).append(modality)
    datasets = []
    headers: dict[Any, Instance] = {}
    for study in studies:
        series_count, instance_count = counts.get(study.id, (0, 0))
        attributes = dict(
            [
                attribute("StudyInstanceUID", study.study_uid),
                attribute(
                    "StudyDate", study.study_date.strftime("%Y%m%d") if study.study_date else None
                ),
                attribute("InstanceAvailability", "ONLINE"),
                attribute("ModalitiesInStudy", *modalities.get(study.id, [])),
                attribute("PatientName", study.pseudo_patient_id),
                attribute("PatientID", study.pseudo_patient_id),
                attribute("NumberOfStudyRelatedSeries", series_count),
                attribute("NumberOfStudyRelatedInstances", instance_count),
                attribute("RetrieveURL", f"{base_url}/studies/{study.study_uid}"),
                *((tag_key(tag), {"vr": vr_of(tag)}) for tag in sorted(EMPTIED)),
            ]
        )
        if _needs_header(query, "study", set(attributes)):
            if not headers:
                headers = await _first_instances(session, Series.study_id, ids)
            header = await _header_of(state, headers.get(study.id))
            attributes = {**_study_level(header), **attributes}
        datasets.append(_selected(attributes, _wanted(query, "study"), query.include_all))
    return SearchResult(datasets, truncated)


#: Groups of patient and study attributes (kept from a header at study level).
_STUDY_GROUPS = ("0008", "0010", "0020", "0032")


def _study_level(header: Attributes) -> Attributes:
    """The study- and patient-level part of an instance header: groups 0008, 0010, 0020
    and 0032 without series or instance attributes (a heuristic; UIDs come from the DB)."""
    instance_only = {
        tag_key(resolve_tag(k))
        for k in (
            "SOPClassUID",
            "SOPInstanceUID",
            "InstanceNumber",
            "SeriesInstanceUID",
            "SeriesNumber",
            "SeriesDate",
            "SeriesTime",
            "SeriesDescription",
            "Modality",
            "ContentDate",
            "ContentTime",
            "AcquisitionDate",
            "AcquisitionTime",
            "ImageType",
            "ImagePositionPatient",
            "ImageOrientationPatient",
        )
    }
    return {
        key: value
        for key, value in header.items()
        if key[:4] in _STUDY_GROUPS and key not in instance_only
    }


async def require_study(session: AsyncSession, user: AuthUser, study_uid: str) -> Study:
    """The DICOM study ``study_uid`` that ``user`` may read; ``404 study_not_found`` else."""
    study = await session.scalar(
        select(Study).where(Study.study_uid == study_uid, Study.id.in_(visible_studies(user)))
    )
    if study is None:
        raise NotFoundError("no such study", code="study_not_found")
    return study


async def search_series(
    session: AsyncSession,
    state: State,
    study: Study,
    query: QidoQuery,
    base_url: str,
) -> SearchResult:
    """Series of ``study`` matching ``query``, in arrival order."""
    conditions: list[ColumnElement[bool]] = [Series.study_id == study.id]
    for tag, raw in query.matches.items():
        if _is_universal(raw):
            continue
        if tag == SERIES_UID:
            conditions.append(Series.series_uid.in_(_values(raw)))
        elif tag == MODALITY:
            conditions.append(Series.modality.in_([value.upper() for value in _values(raw)]))
    statement = (
        select(Series, func.count(Instance.id))
        .join(Instance, Instance.series_id == Series.id, isouter=True)
        .where(*conditions)
        .group_by(Series.id)
        .order_by(Series.created_at, Series.id)
        .offset(query.offset)
        .limit(query.limit + 1)
    )
    rows, truncated = _page(query, list((await session.execute(statement)).tuples()))
    firsts: dict[Any, Instance] = {}
    datasets = []
    for series, count in rows:
        attributes = dict(
            [
                attribute("StudyInstanceUID", study.study_uid),
                attribute("SeriesInstanceUID", series.series_uid),
                attribute("Modality", series.modality),
                attribute("NumberOfSeriesRelatedInstances", count),
                attribute(
                    "RetrieveURL",
                    f"{base_url}/studies/{study.study_uid}/series/{series.series_uid}",
                ),
            ]
        )
        if _needs_header(query, "series", set(attributes)):
            if not firsts:
                ids = [row[0].id for row in rows]
                firsts = await _first_instances(session, Series.id, ids)
            header = await _header_of(state, firsts.get(series.id))
            attributes = {**header, **attributes}
        datasets.append(_selected(attributes, _wanted(query, "series"), query.include_all))
    return SearchResult(datasets, truncated)


async def search_instances(
    session: AsyncSession,
    state: State,
    study: Study,
    series_uid: str | None,
    query: QidoQuery,
    base_url: str,
) -> SearchResult:
    """Instances of ``study`` (of its series ``series_uid`` when given) matching ``query``."""
    conditions: list[ColumnElement[bool]] = [
        Series.study_id == study.id,
        Instance.sop_class_uid != NIFTI_SOP_CLASS,
    ]
    if series_uid is not None:
        conditions.append(Series.series_uid == series_uid)
    for tag, raw in query.matches.items():
        if _is_universal(raw):
            continue
        if tag == SOP_UID:
            conditions.append(Instance.sop_instance_uid.in_(_values(raw)))
        elif tag == SOP_CLASS:
            conditions.append(Instance.sop_class_uid.in_(_values(raw)))
        elif tag == SERIES_UID:
            conditions.append(Series.series_uid.in_(_values(raw)))
        elif tag == MODALITY:
            conditions.append(Series.modality.in_([value.upper() for value in _values(raw)]))
    statement = (
        select(Instance, Series)
        .join(Series, Instance.series_id == Series.id)
        .where(*conditions)
        .order_by(Series.created_at, Instance.created_at, Instance.id)
        .offset(query.offset)
        .limit(query.limit + 1)
    )
    rows, truncated = _page(query, list((await session.execute(statement)).tuples()))
    datasets = []
    for instance, series in rows:
        url = (
            f"{base_url}/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}"
        )
        attributes = dict(
            [
                attribute("StudyInstanceUID", study.study_uid),
                attribute("SeriesInstanceUID", series.series_uid),
                attribute("SOPInstanceUID", instance.sop_instance_uid),
                attribute("SOPClassUID", instance.sop_class_uid),
                attribute("Modality", series.modality),
                attribute("InstanceAvailability", "ONLINE"),
                attribute("NumberOfFrames", instance.frames),
                attribute("RetrieveURL", url),
            ]
        )
        for keyword, value in (("Rows", instance.rows), ("Columns", instance.columns)):
            if value is not None:
                name, value_element = attribute(keyword, value)
                attributes[name] = value_element
        if _needs_header(query, "instance", set(attributes)):
            attributes = {**(await instance_header(state, instance)), **attributes}
        datasets.append(_selected(attributes, _wanted(query, "instance"), query.include_all))
    return SearchResult(datasets, truncated)
