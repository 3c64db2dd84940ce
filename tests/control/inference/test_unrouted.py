"""A worker starting up routes received cases that were stored before routing existed."""

from __future__ import annotations

import uuid

from pydicom.data import get_testdata_file
from sqlalchemy import delete, select

from control.db.engine import create_engine, create_session_factory
from control.db.models import Case, CaseStatus, InferenceJob
from control.inference.worker import Worker
from control.storage import build_store
from tests.fixtures.dx import chest_dx
from tests.fixtures.uploads import upload


async def test_start_up_routes_only_never_routed_cases(client, accounts, settings):
    pacs = accounts["pacs1"]
    chest = uuid.UUID((await upload(client, pacs, ("dx.dcm", chest_dx(64))))["case_ids"][0])
    with open(get_testdata_file("CT_small.dcm"), "rb") as handle:
        ct_file = handle.read()
    ct = uuid.UUID((await upload(client, pacs, ("ct.dcm", ct_file)))["case_ids"][0])
    engine = create_engine(settings)
    factory = create_session_factory(engine)
    try:
        async with factory() as session:  # the chest case as an older version stored it
            await session.execute(delete(InferenceJob).where(InferenceJob.case_id == chest))
            case = await session.get(Case, chest)
            case.status, case.pipeline = CaseStatus.RECEIVED, None
            await session.commit()
        worker = Worker(settings, factory, build_store(settings))
        assert await worker.route_unrouted() == 1
        assert await worker.route_unrouted() == 0
        async with factory() as session:
            jobs = (await session.scalars(select(InferenceJob.case_id))).all()
            assert jobs == [chest]
            assert (await session.get(Case, chest)).status == CaseStatus.QUEUED
            no_model = await session.get(Case, ct)
            assert no_model.status == CaseStatus.RECEIVED and "no_model" in no_model.flags
        await worker.triton.close()
    finally:
        await engine.dispose()
