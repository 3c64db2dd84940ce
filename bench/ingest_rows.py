"""The database half of ingest: rows of new one-image studies, per study and per statement.

    .venv/bin/python -m bench.ingest_rows [--studies 64] [--rounds 6] [--quick]

Each round prepares ``--studies`` generated 64² DX radiographs, each its own study (as the
listener's C-STORE batches of radiographs are), outside the timing, then times
``IngestService.ingest_prepared`` on them: the look-ups, the rows (study, link, case, series,
instance, instance record, job), the audit entries, the fsynced objects and the commit, on
SQLite and the filesystem store in a fresh data directory. Statements are counted with an
SQLAlchemy cursor listener (an ``executemany`` counts once). ``--quick``: 16 studies,
3 rounds. Prints milliseconds and statements per study for each round and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.machine import describe
from control.config import Settings
from control.db.engine import create_engine, create_session_factory
from control.db.migrate import upgrade
from control.dicom.reader import UploadLimits
from control.domain.audit.chain import Actor
from control.domain.studies.prepare import prepare_each
from control.domain.studies.service import IngestService
from control.storage import build_store
from tests.fixtures.dx import chest_dx


async def run(studies: int, rounds: int, data: Path) -> list[tuple[float, int]]:
    """``(seconds, statements)`` of each round."""
    settings = Settings(
        data_dir=data / "var",
        database_url=f"sqlite+aiosqlite:///{data}/bench.sqlite",
        secret_key="bench-" + "0" * 58,
        triton_required=False,
        worker_enabled=False,
    )
    upgrade(settings)
    engine = create_engine(settings)
    statements = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    sessions, store = create_session_factory(engine), build_store(settings)
    limits, key = UploadLimits.from_settings(settings), settings.key("deid")
    figures = []
    try:
        for number in range(rounds):
            files = [
                (f"dx{i}.dcm", chest_dx(64, seed=number * studies + i, patient_id=f"R{number}-{i}"))
                for i in range(studies)
            ]
            prepared, rejected = prepare_each(files, limits, key)
            statements[0] = 0
            started = time.perf_counter()
            async with sessions() as session:
                service = IngestService(session, store, settings, source="dimse")
                result, failed = await service.ingest_prepared(
                    prepared, rejected, Actor("bench", "integration")
                )
            elapsed = time.perf_counter() - started
            if failed or sum(study.new_instances for study in result.studies) != studies:
                raise RuntimeError("not every study was stored")
            figures.append((elapsed, statements[0]))
    finally:
        await engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=64, help="new studies per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="16 studies, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.studies, args.rounds = 16, 3
    with tempfile.TemporaryDirectory(prefix="ingest-rows-") as tmp:
        figures = asyncio.run(run(args.studies, args.rounds, Path(tmp)))
    print(f"{describe()}; SQLite, filesystem store")
    for number, (seconds, statements) in enumerate(figures):
        print(
            f"round {number}: {args.studies} new studies in {seconds * 1000:.0f} ms = "
            f"{seconds * 1000 / args.studies:.1f} ms and "
            f"{statements / args.studies:.1f} statements per study"
        )
    per_study = statistics.median(seconds / args.studies for seconds, _ in figures)
    print(f"median: {per_study * 1000:.1f} ms per new study")


if __name__ == "__main__":
    main()
