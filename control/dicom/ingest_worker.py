"""The DICOM listener's ingest process: spooled instances through ``IngestService``.

pynetdicom decodes PDUs in Python threads and the ingest (parse, de-identify, hash, store,
database) is Python too, so in one process they take turns on the GIL. The listener hands
each batch of spooled files to one of these separate processes (``dicom_ingest_processes``
of them: while one batch holds the database, the next is parsed, de-identified and hashed)
and keeps receiving meanwhile: on a 2-core machine receiving and storing run side by side.
Each worker has its own event loop, engine and object store, made once by
:func:`init_worker`; it reads the spool files itself, so only paths and counts cross the
process boundary.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control.config import Settings
from control.domain.audit.chain import Actor
from control.errors import MedVisionError
from control.storage import ObjectStore


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did: committed (``ok``) with counts and the codes of the instances the
    ingest rejected, or not committed at all (``ok`` false, ``error_code``)."""

    ok: bool
    stored_new: int = 0
    stored_existing: int = 0
    rejected_codes: list[str] = field(default_factory=list)
    error_code: str | None = None


@dataclass
class _Worker:
    loop: asyncio.AbstractEventLoop
    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    store: ObjectStore


_worker: _Worker | None = None


def init_worker(settings: Settings) -> None:
    """Process-pool initializer: logging, an event loop, the engine and the store. Ctrl-C
    in a terminal reaches the whole process group: the listener decides when to stop, so the
    worker ignores SIGINT and finishes its batch."""
    global _worker
    from control.db.engine import create_engine, create_session_factory

    # The ingest is imported now, once: otherwise the first batch pays for it (0.5 s).
    from control.domain.studies import service  # noqa: F401
    from control.http.logging import configure_logging
    from control.storage import build_store

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level, settings.log_json)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = create_engine(settings)
    _worker = _Worker(loop, settings, create_session_factory(engine), build_store(settings))


def ready() -> bool:
    """Whether :func:`init_worker` has run here (the listener awaits it once at start-up so
    that the first batch does not pay for starting the process)."""
    return _worker is not None


def ingest_spooled(paths: list[str], username: str | None, role: str | None) -> BatchOutcome:
    """Ingest the spooled Part-10 files in one ``IngestService.ingest_each`` call (one
    transaction) as the given account. Never raises: a batch that could not be committed
    comes back with ``ok`` false and its error code, its files untouched."""
    if _worker is None:
        raise RuntimeError("init_worker was not run in this process")
    try:
        files = [(Path(path).name, Path(path).read_bytes()) for path in paths]
        return _worker.loop.run_until_complete(_ingest(_worker, files, Actor(username, role)))
    except Exception as error:
        code = error.code if isinstance(error, MedVisionError) else type(error).__name__
        return BatchOutcome(ok=False, error_code=code)


async def _ingest(worker: _Worker, files: list[tuple[str, bytes]], actor: Actor) -> BatchOutcome:
    from control.domain.studies.service import IngestService

    async with worker.session_factory() as session:
        service = IngestService(session, worker.store, worker.settings, source="dimse")
        result, rejected = await service.ingest_each(files, actor)
    return BatchOutcome(
        ok=True,
        stored_new=sum(study.new_instances for study in result.studies),
        stored_existing=sum(study.existing_instances for study in result.studies),
        rejected_codes=[item.error.code for item in rejected],
    )
