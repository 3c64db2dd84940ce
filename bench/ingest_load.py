"""Ingest under load: N DX instances uploaded by concurrent clients, through to findings.

    .venv/bin/python -m bench.ingest_load [--n 200] [--clients 8] [--size 512]
        [--pg | --database-url URL] [--workers N] [--repository PATH] [--quick]

``--quick`` (24 instances, about a minute, same checks) is for a developer checking a
change; the README's figures come from the full mode.

Issue goal: "200 instances uploaded by 8 concurrent clients: instances/s, p95 latency to
findings, and zero lost or duplicated cases (checked)."

The real stack runs as subprocesses (see :mod:`bench.stack`): Triton on free ports and
``medvision serve`` with its in-process job worker (SQLite in a temporary data directory by
default). ``--pg`` uses a throwaway PostgreSQL database on 127.0.0.1:5432 (dropped after);
``--database-url`` an existing one. ``--workers N`` adds N ``medvision worker`` processes
(PostgreSQL only: SQLite allows one writer process).

After one warm-up instance (uploaded and waited for), ``--clients`` asyncio tasks, each with
its own httpx client, upload ``--n`` distinct ``chest_dx(--size)`` instances (one study each,
distributed round robin), one POST per instance. A thread polls the database every
``--poll-ms`` and notes when each finding is first seen committed. Figures:

- upload throughput: instances / (first upload start → last upload response);
- end-to-end throughput: instances / (first upload start → last finding stored);
- per-case latency, upload response → finding stored: from the finding's ``created_at``
  (set by the worker at insert, same host clock) and from the poll that first saw it.

Checks (exit status 1 when any fails): every upload answered 201 with one new case; the
database holds exactly ``--n`` new cases, all of them the ones returned; each has exactly one
finding, exactly one inference job, which is ``done``, and status ``inferred``; no job
failed; the audit chain verifies (``GET /api/audit/verify``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stack import (
    Stack,
    describe_cxr,
    epoch_seconds,
    load_line,
    summary_ms,
    throwaway_postgres,
    upload_case,
)


@dataclass
class Upload:
    """One instance's upload: when it started and answered, and the case it made."""

    index: int
    started: float
    answered: float
    status: int
    case_ids: list[uuid.UUID]


class FindingWatcher(threading.Thread):
    """Polls the findings table; records when each finding (by id) is first seen."""

    def __init__(self, engine: Any, poll_s: float) -> None:
        super().__init__(name="finding-watcher", daemon=True)
        self.engine = engine
        self.poll_s = poll_s
        self.seen: dict[uuid.UUID, tuple[uuid.UUID, float, float, float]] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from sqlalchemy import func, select

        from control.db.models import Finding

        count = 0
        try:
            while not self.stop.is_set():
                polled_at = time.time()
                with self.engine.connect() as connection:
                    now = connection.execute(select(func.count(Finding.id))).scalar_one()
                    if now != count:
                        rows = connection.execute(
                            select(
                                Finding.id, Finding.case_id, Finding.created_at, Finding.latency_ms
                            )
                        ).all()
                        for finding_id, case_id, created_at, latency_ms in rows:
                            if finding_id not in self.seen:
                                self.seen[finding_id] = (
                                    case_id,
                                    polled_at,
                                    epoch_seconds(created_at),
                                    latency_ms,
                                )
                        count = now
                self.stop.wait(self.poll_s)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def cases_seen(self) -> set[uuid.UUID]:
        return {case_id for case_id, *_ in list(self.seen.values())}


async def upload_all(
    stack: Stack, payloads: list[bytes], clients: int
) -> tuple[list[Upload], float, float]:
    """Every payload uploaded by ``clients`` concurrent tasks; (uploads, first start, last end)."""
    import httpx

    uploads: list[Upload] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def client_task(indices: list[int]) -> None:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=300, limits=limits) as http:
            for index in indices:
                started = time.time()
                response = await http.post(
                    "/api/studies",
                    files={"files": (f"dx-{index}.dcm", payloads[index], "application/dicom")},
                    headers=stack.headers,
                )
                answered = time.time()
                case_ids = []
                if response.status_code == 201:
                    case_ids = [uuid.UUID(c) for c in response.json()["case_ids"]]
                uploads.append(Upload(index, started, answered, response.status_code, case_ids))

    plan = [list(range(c, len(payloads), clients)) for c in range(clients)]
    await asyncio.gather(*(client_task(indices) for indices in plan if indices))
    return uploads, min(u.started for u in uploads), max(u.answered for u in uploads)


def wait_for_cases(
    stack: Stack, watcher: FindingWatcher, engine: Any, wanted: set[uuid.UUID], timeout_s: float
) -> bool:
    """Wait until every wanted case has a finding; False on timeout or a failed job."""
    from sqlalchemy import func, select

    from control.db.models import InferenceJob, JobStatus

    deadline = time.monotonic() + timeout_s
    last_report = time.monotonic()
    while True:
        if watcher.error is not None:
            raise watcher.error
        done = len(wanted & watcher.cases_seen())
        if done == len(wanted):
            return True
        stack.check_alive()
        with engine.connect() as connection:
            failed = connection.execute(
                select(func.count(InferenceJob.id)).where(InferenceJob.status == JobStatus.FAILED)
            ).scalar_one()
        if failed:
            print(f"{failed} job(s) failed: not waiting further", flush=True)
            return False
        if time.monotonic() > deadline:
            print(f"timed out: {done}/{len(wanted)} cases have findings", flush=True)
            return False
        if time.monotonic() - last_report > 10:
            print(f"  {done}/{len(wanted)} cases have findings ...", flush=True)
            last_report = time.monotonic()
        time.sleep(0.5)


def run_checks(
    stack: Stack, engine: Any, uploads: list[Upload], n: int, cases_before: int
) -> dict[str, bool | str]:
    """The lost/duplicate checks, each with a short explanation when it fails."""
    import httpx
    from sqlalchemy import func, select

    from control.db.models import Case, CaseStatus, Finding, InferenceJob, JobStatus

    checks: dict[str, bool | str] = {}
    bad = [u for u in uploads if u.status != 201 or len(u.case_ids) != 1]
    checks["every upload 201 with one case"] = (
        True if not bad else f"{len(bad)} bad, e.g. status {bad[0].status} {bad[0].case_ids}"
    )
    returned = {c for u in uploads for c in u.case_ids}
    checks[f"{n} distinct case ids returned"] = (
        True if len(returned) == n else f"{len(returned)} distinct"
    )
    with engine.connect() as connection:
        total = connection.execute(select(func.count(Case.id))).scalar_one()
        ours = connection.execute(
            select(Case.id, Case.status).where(Case.id.in_(list(returned)))
        ).all()
        findings = dict(
            connection.execute(
                select(Finding.case_id, func.count(Finding.id))
                .where(Finding.case_id.in_(list(returned)))
                .group_by(Finding.case_id)
            ).all()
        )
        jobs = connection.execute(
            select(InferenceJob.case_id, InferenceJob.status).where(
                InferenceJob.case_id.in_(list(returned))
            )
        ).all()
        failed_jobs = connection.execute(
            select(func.count(InferenceJob.id)).where(InferenceJob.status == JobStatus.FAILED)
        ).scalar_one()
    checks[f"exactly {n} new cases in the database"] = (
        True if total - cases_before == n else f"{total - cases_before} new"
    )
    checks["every returned case stored"] = (
        True if len(ours) == len(returned) else f"{len(returned) - len(ours)} missing"
    )
    not_inferred = [c for c, status in ours if status != CaseStatus.INFERRED]
    checks["every case inferred"] = True if not not_inferred else f"{len(not_inferred)} not"
    wrong = {c: findings.get(c, 0) for c in returned if findings.get(c, 0) != 1}
    checks["exactly one finding per case (none lost, none duplicated)"] = (
        True if not wrong else f"{len(wrong)} cases with {sorted(set(wrong.values()))} findings"
    )
    per_case: dict[uuid.UUID, list[str]] = {}
    for case_id, status in jobs:
        per_case.setdefault(case_id, []).append(str(status))
    bad_jobs = {c: s for c, s in per_case.items() if s != [JobStatus.DONE.value]}
    missing_jobs = returned - set(per_case)
    checks["exactly one job per case, done"] = (
        True
        if not bad_jobs and not missing_jobs
        else f"{len(bad_jobs)} wrong, {len(missing_jobs)} without a job"
    )
    checks["no failed jobs"] = True if failed_jobs == 0 else f"{failed_jobs} failed"
    verify = httpx.get(f"{stack.base_url}/api/audit/verify", headers=stack.headers, timeout=300)
    report = verify.json() if verify.status_code == 200 else {}
    checks["audit chain verifies"] = (
        True if report.get("ok") is True else f"{verify.status_code} {str(report)[:200]}"
    )
    return checks


def run(args: argparse.Namespace, database_url: str | None, scratch: Path) -> dict[str, Any]:
    """Start the stack, warm up, run the load, wait, check; the figures and checks."""
    import httpx
    from sqlalchemy import func, select

    from control.db.models import Case
    from tests.fixtures.dx import chest_dx

    print(f"generating {args.n} chest_dx({args.size}) instances ...", flush=True)
    payloads = [
        chest_dx(args.size, seed=1000 + i, patient_id=f"LOAD-{i:04d}") for i in range(args.n)
    ]
    with (
        Stack(
            scratch,
            repository_arg=args.repository,
            database_url=database_url,
            extra_workers=args.workers,
        ) as stack,
        stack.database() as engine,
    ):
        print("warm-up ...", flush=True)
        watcher = FindingWatcher(engine, args.poll_ms / 1e3)
        watcher.start()
        try:
            with httpx.Client(base_url=stack.base_url, timeout=120) as http:
                warm = upload_case(http, stack.headers, chest_dx(args.size, seed=999), "warm.dcm")
            if not wait_for_cases(stack, watcher, engine, {warm}, 300):
                raise RuntimeError(f"warm-up case never inferred:\n{stack.log_tail('serve')}")
            with engine.connect() as connection:
                cases_before = connection.execute(select(func.count(Case.id))).scalar_one()
            print(f"uploading {args.n} instances with {args.clients} clients ...", flush=True)
            uploads, first_start, last_answer = asyncio.run(
                upload_all(stack, payloads, args.clients)
            )
            print(
                f"uploads done in {last_answer - first_start:.1f} s; waiting for findings ...",
                flush=True,
            )
            wanted = {c for u in uploads for c in u.case_ids}
            completed = wait_for_cases(stack, watcher, engine, wanted, args.timeout_s)
        finally:
            watcher.stop.set()
            watcher.join(timeout=10)
        checks = run_checks(stack, engine, uploads, args.n, cases_before)
        checks["all findings arrived in time"] = True if completed else "no (see above)"
        repository_note, network = stack.repository_note, describe_cxr(stack.repository)
        backend = "PostgreSQL" if stack.settings().is_postgres else "SQLite"

    answered = {c: u.answered for u in uploads for c in u.case_ids}
    rows = [row for row in watcher.seen.values() if row[0] in answered]
    created_latency = [created - answered[case] for case, _, created, _ in rows]
    seen_latency = [seen - answered[case] for case, seen, _, _ in rows]
    last_seen = max((seen for _, seen, _, _ in rows), default=float("nan"))
    last_created = max((created for _, _, created, _ in rows), default=float("nan"))
    upload_latency = [u.answered - u.started for u in uploads]
    return {
        "repository_note": repository_note,
        "network": network,
        "backend": backend,
        "upload_wall_s": last_answer - first_start,
        "upload_rate": args.n / (last_answer - first_start),
        "upload_latency": upload_latency,
        "end_to_end_s": last_seen - first_start,
        "end_to_end_rate": len(rows) / (last_seen - first_start),
        "end_to_end_rate_created": len(rows) / (last_created - first_start),
        "created_latency": created_latency,
        "seen_latency": seen_latency,
        "worker_ms": [latency for _, _, _, latency in rows],
        "checks": checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="instances to upload")
    parser.add_argument("--clients", type=int, default=8, help="concurrent upload clients")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--pg", action="store_true", help="a throwaway PostgreSQL database on 127.0.0.1:5432"
    )
    database.add_argument("--database-url", default=None, help="an existing database to use")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="extra `medvision worker` processes (PostgreSQL only)",
    )
    parser.add_argument("--poll-ms", type=float, default=20.0, help="findings poll interval")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="wait for findings")
    parser.add_argument("--repository", type=Path, default=None, help="model repository to serve")
    parser.add_argument(
        "--quick", action="store_true", help="24 instances: a check, not the figures"
    )
    args = parser.parse_args()
    if args.quick:
        args.n = 24
    is_pg = args.pg or (args.database_url or "").startswith("postgresql")
    if args.workers and not is_pg:
        parser.error("--workers needs PostgreSQL (--pg or --database-url postgresql://...)")

    from bench.machine import describe

    load_before = os.getloadavg()
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="medvision-bench-") as tmp,
        contextlib.ExitStack() as resources,
    ):
        database_url = (
            resources.enter_context(throwaway_postgres()) if args.pg else args.database_url
        )
        result = run(args, database_url, Path(tmp))

    checks = result["checks"]
    ok = all(value is True for value in checks.values())
    workers = "1 in-process (medvision serve)" + (
        f" + {args.workers} medvision worker processes" if args.workers else ""
    )

    upload, created, seen = (
        summary_ms(result[name]) for name in ("upload_latency", "created_latency", "seen_latency")
    )
    worker = summary_ms([w / 1e3 for w in result["worker_ms"]]) if result["worker_ms"] else None
    machine = describe()
    rows = [
        ("machine", machine),
        ("load average", load_line(load_before)),
        ("models", result["repository_note"]),
        ("network", result["network"]),
        (
            "stack",
            f"medvision serve ({result['backend']}, filesystem store), workers: {workers}, "
            "tritonserver, all on this host",
        ),
        (
            "load",
            f"{args.n} x DX {args.size}x{args.size} (one study each), "
            f"{args.clients} concurrent clients",
        ),
        (
            "upload phase",
            f"{result['upload_wall_s']:.1f} s, {result['upload_rate']:.2f} instances/s, "
            f"upload p50 {upload['median_ms']} ms, p95 {upload['p95_ms']} ms",
        ),
        (
            "end to end (first upload → last finding)",
            f"{result['end_to_end_s']:.1f} s, {result['end_to_end_rate']:.2f} instances/s",
        ),
        (
            "upload response → finding created_at (ms)",
            f"p50 {created['median_ms']}, p95 {created['p95_ms']}, max {created['max_ms']}",
        ),
        (
            f"upload response → finding seen (ms, poll {args.poll_ms:g} ms)",
            f"p50 {seen['median_ms']}, p95 {seen['p95_ms']}, max {seen['max_ms']}",
        ),
        (
            "cxr call inside the worker (ms)",
            f"p50 {worker['median_ms']}, p95 {worker['p95_ms']}" if worker else "none",
        ),
        *(
            (f"check: {name}", "ok" if value is True else f"FAILED: {value}")
            for name, value in checks.items()
        ),
        ("checks", "ALL PASSED" if ok else "FAILED"),
        ("benchmark wall time", f"{time.perf_counter() - started:.0f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    print("\n```\n" + "\n".join(f"{label:<{width}}  {value}" for label, value in rows) + "\n```")
    record = {
        "benchmark": "ingest_load",
        "machine": machine,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "models": result["repository_note"],
        "network": result["network"],
        "database": result["backend"],
        "extra_workers": args.workers,
        "n": args.n,
        "clients": args.clients,
        "size": args.size,
        "upload_s": round(result["upload_wall_s"], 2),
        "upload_instances_per_s": round(result["upload_rate"], 2),
        "upload_p95_ms": upload["p95_ms"],
        "end_to_end_s": round(result["end_to_end_s"], 2),
        "end_to_end_instances_per_s": round(result["end_to_end_rate"], 2),
        "latency_to_findings_ms": {
            "p50": created["median_ms"],
            "p95": created["p95_ms"],
            "max": created["max_ms"],
        },
        "latency_to_findings_seen_ms": {
            "p50": seen["median_ms"],
            "p95": seen["p95_ms"],
            "max": seen["max_ms"],
        },
        "worker_cxr_call_median_ms": round(statistics.median(result["worker_ms"]), 1)
        if result["worker_ms"]
        else None,
        "checks": {name: value for name, value in checks.items()},
        "checks_passed": ok,
    }
    print(json.dumps(record))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
