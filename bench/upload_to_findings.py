"""Upload-to-findings latency of one 1024×1024 DX instance, against the ``cxr`` call alone.

    .venv/bin/python -m bench.upload_to_findings [--reps 30] [--size 1024] [--poll-ms 2]
        [--repository PATH | --network densenet121] [--quick] [--profile FILE]

``--quick`` (5 repetitions, about a minute) is for a developer checking a change; the
README's figures come from the full mode.

Issue goal: "From the end of an upload of one 1024×1024 DX instance to its findings being
stored, median of 30, divided by the ``cxr`` ensemble call alone. Goal ≤ 1.3."

The real stack runs as subprocesses (see :mod:`bench.stack`): Triton on free ports, and
``medvision serve`` (SQLite and the filesystem store in a temporary data directory, its
in-process job worker on, ``MEDVISION_WORKER_POLL_S`` left at its default; the upload
endpoint wakes the worker). Each repetition, after 3 warm-ups:

1. the ensemble call alone: ``cxr`` through :class:`control.triton.client.TritonClient`
   from this process (system shared memory, ``output_bytes`` for the CAM, as
   ``control/served/cxr.py`` ``run_cxr`` calls it) on the pixels of this
   repetition's image (``cxr_pixels`` of the DICOM, as the worker reads it);
2. upload a fresh ``chest_dx(size, seed=i)`` (its own study) with httpx; the clock starts
   when the 201 response has arrived;
3. poll the database every ``--poll-ms`` for the case's finding row (one open sqlite3
   connection: ~3 µs of CPU a poll, so the poll takes no CPU the stack would need): *stored*
   is the time of the poll that first sees it committed (late by at most one poll
   interval). The finding's ``created_at`` (set when the worker flushes the row, before the
   audit entry and the commit) is reported too.

The two are interleaved so load from other processes hits both alike. The ratio is
median(upload end → findings stored) / median(ensemble call).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.stack import (
    CXR_OUTPUTS,
    Stack,
    describe_cxr,
    epoch_seconds,
    load_line,
    summary_ms,
    upload_case,
)
from medvision_contract.cams import longest_side_shape

WARMUP = 3
GOAL = 1.3


class FindingPoll:
    """Reads a case's finding row the cheapest way there is, so that polling every few ms
    takes next to no CPU from the stack it measures (~3 µs a poll with one open sqlite3
    connection against ~120 µs through a SQLAlchemy engine, measured on this machine)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import select

        from control.db.models import Finding

        self.dialect = engine.dialect
        self.case_id = Finding.__table__.c.case_id
        query = select(Finding.created_at, Finding.latency_ms).where(Finding.case_id == 0)
        self.sql = str(query.compile(dialect=self.dialect))
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database:
            raise RuntimeError("the benchmark polls the stack's SQLite database")
        self.connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self.bind = self.case_id.type.bind_processor(self.dialect) or (lambda value: value)

    def row(self, case_id: uuid.UUID) -> tuple[float, float] | None:
        """(created_at epoch seconds, worker-measured Triton latency ms) of the case's finding."""
        found = self.connection.execute(self.sql, (self.bind(case_id),)).fetchone()
        if found is None:
            return None
        return epoch_seconds(datetime.fromisoformat(found[0])), float(found[1])  # ISO text

    def close(self) -> None:
        self.connection.close()


def wait_for_finding(
    stack: Stack, poll: FindingPoll, case_id: uuid.UUID, poll_s: float, timeout_s: float = 300.0
) -> tuple[float, float, float]:
    """(time the committed finding was first seen, its created_at, worker Triton ms)."""
    deadline = time.monotonic() + timeout_s
    polls = 0
    while True:
        polled_at = time.time()
        row = poll.row(case_id)
        if row is not None:
            return polled_at, row[0], row[1]
        polls += 1
        if polls % 200 == 0:
            stack.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no finding for case {case_id} in {timeout_s:g} s")
        time.sleep(poll_s)


async def ensemble_call(client: Any, pixels: Any, invert: bool) -> tuple[float, Any]:
    """Seconds of one ``cxr`` call as the worker makes it, and its CAM output."""
    import numpy as np

    from control.served.base import CAM_MAX_SIDE

    flag = np.array([invert], dtype=np.bool_)
    started = time.perf_counter()
    outputs = await client.infer(
        "cxr",
        {"PIXELS": pixels, "INVERT": flag},
        CXR_OUTPUTS,
        timeout_s=120,
        output_bytes={"CAM": 14 * math.prod(longest_side_shape(pixels.shape, CAM_MAX_SIDE))},
    )
    return time.perf_counter() - started, outputs["CAM"]


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved ensemble calls and upload→findings runs; raw samples in seconds."""
    import httpx

    from control.imaging.cams import atlas_png as _cam_png
    from control.served.cxr import cxr_pixels
    from control.triton.client import TritonClient
    from tests.fixtures.dx import chest_dx

    total = WARMUP + args.reps
    print(f"generating {total} chest_dx({args.size}) instances ...", flush=True)
    payloads = [chest_dx(args.size, seed=i, patient_id=f"BENCH-{i:03d}") for i in range(total)]
    samples: dict[str, list[float]] = {
        "ensemble": [],
        "stored": [],
        "created": [],
        "worker": [],
        "decode": [],
        "pngs": [],
    }
    poll_s = args.poll_ms / 1e3
    async with TritonClient(stack.triton_url, timeout_s=120, retries=1) as client:
        with (
            stack.database() as engine,
            contextlib.closing(FindingPoll(engine)) as poll,
            httpx.Client(base_url=stack.base_url, timeout=120) as http,
        ):
            for i, payload in enumerate(payloads):
                decode_started = time.perf_counter()
                pixels, invert = cxr_pixels(payload)
                decode_s = time.perf_counter() - decode_started
                ensemble_s, cam = await ensemble_call(client, pixels, invert)
                pngs_started = time.perf_counter()
                _cam_png(cam)
                pngs_s = time.perf_counter() - pngs_started
                await asyncio.sleep(0.02)
                case_id = upload_case(http, stack.headers, payload, f"dx-{i}.dcm")
                uploaded = time.time()
                seen, created, worker_ms = wait_for_finding(stack, poll, case_id, poll_s)
                await asyncio.sleep(0.02)
                if i < WARMUP:
                    continue
                samples["ensemble"].append(ensemble_s)
                samples["stored"].append(seen - uploaded)
                samples["created"].append(created - uploaded)
                samples["worker"].append(worker_ms / 1e3)
                samples["decode"].append(decode_s)
                samples["pngs"].append(pngs_s)
                print(
                    f"  rep {i - WARMUP + 1:>2}/{args.reps}: ensemble {1e3 * ensemble_s:6.1f} ms"
                    f"  upload→stored {1e3 * (seen - uploaded):6.1f} ms",
                    flush=True,
                )
        if client.shared_memory_stats.requests < total:
            raise RuntimeError(f"shared memory was not used: {client.shared_memory_stats}")
    return samples


def network_repository(args: argparse.Namespace, scratch: Path) -> Path | None:
    """``--repository``, or with ``--network`` a temporary CXR-only repository with it."""
    if args.network is None:
        return args.repository
    from bench.triton_cxr import build_repository

    print(f"exporting a {args.network} cxr_net with random weights ...", flush=True)
    return build_repository(scratch / "network", args.network)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reps", type=int, default=30, help="measured repetitions (after 3 warm-up)"
    )
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="database poll interval")
    parser.add_argument("--repository", type=Path, default=None, help="model repository to serve")
    parser.add_argument(
        "--network",
        choices=("densenet121",),
        default=None,
        help="serve the CXR ensemble with this cxr_net (random weights, exported to a "
        "temporary repository) instead of the repository's",
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 repetitions: a check, not the figures"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="sample medvision serve with py-spy during the run into this file and print its "
        "top entries (slows the run: its figures are not the README's)",
    )
    args = parser.parse_args()
    if args.quick:
        args.reps = 5

    from bench.machine import describe
    from bench.profile import print_profile, sampled

    load_before = os.getloadavg()
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="medvision-bench-") as tmp,
        Stack(Path(tmp), repository_arg=network_repository(args, Path(tmp))) as stack,
    ):
        with sampled(stack.serve_pid, args.profile):
            samples = asyncio.run(measure(stack, args))
        repository_note, network = stack.repository_note, describe_cxr(stack.repository)

    ensemble = summary_ms(samples["ensemble"])
    stored = summary_ms(samples["stored"])
    created = summary_ms(samples["created"])
    worker = summary_ms(samples["worker"])
    ratio = statistics.median(samples["stored"]) / statistics.median(samples["ensemble"])
    ratio_created = statistics.median(samples["created"]) / statistics.median(samples["ensemble"])
    rows = [
        ("machine", describe()),
        ("load average", load_line(load_before)),
        ("models", repository_note),
        ("network", network),
        ("image", f"DX {args.size}x{args.size} UINT16 MONOCHROME2 (tests/fixtures/dx.py chest_dx)"),
        (
            "stack",
            "medvision serve (SQLite, filesystem store, in-process worker, default poll) "
            "+ tritonserver, all on this host",
        ),
        (
            f"cxr ensemble call alone, {args.reps} reps (ms)",
            f"median {ensemble['median_ms']}, p95 {ensemble['p95_ms']}",
        ),
        (
            "upload end → findings stored (ms)",
            f"median {stored['median_ms']}, p95 {stored['p95_ms']}, max {stored['max_ms']} "
            f"(DB polled every {args.poll_ms:g} ms)",
        ),
        (
            "upload end → finding created_at (ms)",
            f"median {created['median_ms']}, p95 {created['p95_ms']}",
        ),
        (
            "cxr call inside the worker (finding latency_ms)",
            f"median {worker['median_ms']}, p95 {worker['p95_ms']}",
        ),
        (
            "worker steps timed in this process (ms)",
            f"DICOM → pixels median {1e3 * statistics.median(samples['decode']):.1f}, "
            f"CAM image (14 maps packed) median {1e3 * statistics.median(samples['pngs']):.1f}",
        ),
        (
            f"ratio stored / ensemble (goal ≤ {GOAL})",
            f"{ratio:.2f}  ({'met' if ratio <= GOAL else 'NOT met'}; "
            f"created_at-based {ratio_created:.2f})",
        ),
        ("benchmark wall time", f"{time.perf_counter() - started:.0f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    print("\n```\n" + "\n".join(f"{label:<{width}}  {value}" for label, value in rows) + "\n```")
    if args.profile is not None:
        print_profile(args.profile)
    record = {
        "benchmark": "upload_to_findings",
        "machine": describe(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "models": repository_note,
        "network": network,
        "size": args.size,
        "reps": args.reps,
        "poll_ms": args.poll_ms,
        "ensemble": ensemble,
        "upload_to_stored": stored,
        "upload_to_created_at": created,
        "worker_cxr_call": worker,
        "decode_median_ms": round(1e3 * statistics.median(samples["decode"]), 1),
        "cam_png_median_ms": round(1e3 * statistics.median(samples["pngs"]), 1),
        "ratio": round(ratio, 3),
        "ratio_created_at": round(ratio_created, 3),
        "goal": GOAL,
        "goal_met": ratio <= GOAL,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
