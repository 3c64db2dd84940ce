"""Workers in other processes wake on PostgreSQL NOTIFY instead of waiting for their poll."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import select

from control.config import Settings
from control.db.engine import create_engine, create_session_factory
from control.db.models import InferenceJob
from control.domain.jobs.wakeup import libpq_conninfo
from control.inference.worker import Worker
from control.storage import build_store
from tests.fixtures.dx import chest_dx
from tests.fixtures.uploads import upload


def test_conninfo_drops_the_sqlalchemy_driver():
    settings = Settings(database_url="postgresql+psycopg://medvision:s3cret@db.example:5433/mv")
    assert libpq_conninfo(settings) == "postgresql://medvision:s3cret@db.example:5433/mv"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_an_idle_worker_takes_a_new_job_long_before_its_next_poll(client, accounts, settings):
    slow = settings.model_copy(
        update={
            "worker_poll_s": 30.0,
            "triton_url": "127.0.0.1:9",  # nothing listens: the attempt fails fast, is retried
            "triton_timeout_s": 2.0,
            "job_backoff_s": 60.0,
        }
    )
    engine = create_engine(slow)
    worker = Worker(slow, create_session_factory(engine), build_store(slow))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(1.5)  # polled the empty queue once; now listening and waiting
        body = await upload(client, accounts["pacs1"], ("chest.dcm", chest_dx(64)))
        case_id = uuid.UUID(body["case_ids"][0])
        started = time.monotonic()
        async with create_session_factory(engine)() as session:
            while True:
                job = await session.scalar(
                    select(InferenceJob)
                    .where(InferenceJob.case_id == case_id)
                    .execution_options(populate_existing=True)
                )
                if job is not None and job.error_code is not None:
                    break
                assert time.monotonic() - started < 10, "the worker did not wake up"
                await session.rollback()
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
        await engine.dispose()
    assert job.attempts == 1 and job.error_code == "inference_unavailable"


async def test_a_wake_up_during_a_claim_is_not_lost(settings, monkeypatch):
    # Work queued while the worker is claiming (after the claim's snapshot) must still wake
    # it: clearing the wake-up after the claim would drop it until the next poll (30 s).
    slow = settings.model_copy(update={"worker_poll_s": 30.0})
    engine = create_engine(slow)
    worker = Worker(slow, create_session_factory(engine), build_store(slow))
    stop = asyncio.Event()
    claims: list[float] = []

    async def claim_while_work_arrives() -> bool:
        claims.append(time.monotonic())
        if len(claims) == 1:
            worker.notify()  # an upload commits and wakes the worker mid-claim
        else:
            stop.set()
        return False

    monkeypatch.setattr(worker, "run_once", claim_while_work_arrives)
    monkeypatch.setattr(worker, "route_unrouted", lambda: asyncio.sleep(0))
    try:
        await asyncio.wait_for(worker.run(stop), timeout=10)
    finally:
        await engine.dispose()
    assert len(claims) == 2 and claims[1] - claims[0] < 5
