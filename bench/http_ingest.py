"""Sequential single-file HTTP upload: MedVision ``POST /api/studies`` against Orthanc's REST
``POST /instances``, on pydicom's test files.

    .venv/bin/python -m bench.http_ingest [--rounds 5] [--quick] [--out var/bench]

Issue #14 goal: "sequential single-file HTTP upload of pydicom's test files that both accept,
MedVision ÷ Orthanc REST ``POST /instances`` on the same files: ≥ 0.5".

Each round starts a fresh ``medvision serve`` (SQLite and filesystem store in a new data
directory, worker off, Triton not required: cases are queued, not inferred) and a fresh
Orthanc (Debian package, loopback-only, ``TCP_NODELAY=1``), then sends every DICOM file of
``pydicom.data`` one request at a time over one keep-alive connection each: the file to
MedVision (multipart form field ``files``, bearer token of an integration account), then the
same file to Orthanc (raw body). Taking turns file by file means both servers see the same
machine load. Only files both servers accept (2xx) are counted; a file MedVision refuses
(an unsupported SOP class, no pixel data, a damaged test file) is listed with its error code.

The figure is the median time per request over every accepted file of every round, each
server's own; the ratio is Orthanc's median ÷ MedVision's (requests per second, MedVision ÷
Orthanc). ``--quick`` runs one round (well under a minute); the README figures come from the
full run. Prints the machine and load average, writes ``--out/http_ingest-<time>.json``.

``--floors`` also measures what a request costs before any ingest work, on the same machine
in the same run (medians): a fresh server's ``GET /health`` (no authentication, no database)
and ``GET /api/users/me`` (authentication and one row), the DICOM work alone
(``prepare_upload``: parse, validate, de-identify, encode, hash; in this process) per
accepted file, one SQL round trip through SQLAlchemy's async session on SQLite, an fsynced
commit, and an fsynced 4 KiB file plus its directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from pydicom.data import get_testdata_files

from bench.machine import describe
from bench.pacs_ingest import code_under_test, medvision_serve
from bench.profile import print_profile
from bench.stack import load_line, percentile
from tests.fixtures.orthanc import start_orthanc


def corpus() -> list[Path]:
    """pydicom's DICOM test files (``*.dcm``), sorted by name."""
    return sorted({Path(name) for name in get_testdata_files("*.dcm")}, key=lambda p: p.name)


def _error_code(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(response.json().get("code") or response.status_code)
    return str(response.status_code)


def one_round(
    paths: list[Path], scratch: Path, profile: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Upload every path to a fresh MedVision and a fresh Orthanc, file by file in turn.

    Returns, per file name: ``medvision_s``/``orthanc_s`` (seconds for the request) and
    ``medvision``/``orthanc`` (``"ok"`` or the refusal's code).
    """
    results: dict[str, dict[str, Any]] = {}
    with (
        medvision_serve(scratch, profile) as (base, headers),
        start_orthanc(scratch / "orthanc") as pacs,
        httpx.Client(timeout=120, headers=headers) as medvision,
        httpx.Client(timeout=120) as orthanc,
    ):
        for path in paths:
            data = path.read_bytes()
            began = time.perf_counter()
            mine = medvision.post(
                f"{base}/api/studies", files={"files": (path.name, data, "application/dicom")}
            )
            middle = time.perf_counter()
            theirs = orthanc.post(
                f"{pacs.url}/instances", content=data, headers={"Content-Type": "application/dicom"}
            )
            ended = time.perf_counter()
            results[path.name] = {
                "bytes": len(data),
                "medvision_s": middle - began,
                "orthanc_s": ended - middle,
                "medvision": "ok" if mine.is_success else _error_code(mine),
                "orthanc": "ok" if theirs.is_success else str(theirs.status_code),
            }
    return results


def _median_ms(seconds: list[float]) -> float:
    return round(1e3 * statistics.median(seconds), 3)


def _timed(action: Any, repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls of ``action`` (after one warm-up call)."""
    action()
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - began)
    return _median_ms(seconds)


def _fsync_file_and_directory(directory: Path, repeat: int = 200) -> float:
    counter = iter(range(10**9))

    def write() -> None:
        with (directory / f"f{next(counter)}").open("wb") as handle:
            handle.write(b"x" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    return _timed(write, repeat)


async def _sqlite_floors(scratch: Path, repeat: int = 300) -> dict[str, float]:
    """One SQL round trip and one fsynced commit through the app's own engine setup."""
    from sqlalchemy import text

    from control.config import Settings
    from control.db.engine import create_engine, create_session_factory
    from control.db.migrate import upgrade

    settings = Settings(
        data_dir=scratch / "var", database_url=f"sqlite+aiosqlite:///{scratch}/f.db"
    )
    upgrade(settings)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            await session.execute(text("SELECT 1"))
            round_trip, commit = [], []
            for _ in range(repeat):
                began = time.perf_counter()
                await session.execute(text("SELECT 1"))
                round_trip.append(time.perf_counter() - began)
                await session.execute(text("UPDATE audit_head SET entries = entries WHERE id = 1"))
                began = time.perf_counter()
                await session.commit()
                commit.append(time.perf_counter() - began)
    finally:
        await engine.dispose()
    return {"sql_round_trip_ms": _median_ms(round_trip), "sqlite_commit_ms": _median_ms(commit)}


def floors(paths: list[Path], accepted: list[str], scratch: Path) -> dict[str, Any]:
    """What a request costs before the ingest's own database work (see the module doc)."""
    from control.config import Settings
    from control.dicom.reader import UploadLimits
    from control.domain.studies.prepare import prepare_upload

    scratch.mkdir(parents=True, exist_ok=True)
    # The DICOM work below logs what it finds in pydicom's odd files; not what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    result: dict[str, Any] = {}
    with medvision_serve(scratch / "serve") as (base, headers), httpx.Client(timeout=60) as client:
        result["get_health_ms"] = _timed(lambda: client.get(f"{base}/health"), 200)
        result["get_users_me_ms"] = _timed(
            lambda: client.get(f"{base}/api/users/me", headers=headers), 200
        )
    settings = Settings(data_dir=scratch / "prepare")
    limits, key = UploadLimits.from_settings(settings), settings.key("deid")
    prepare_ms = {}
    for path in paths:
        if path.name in accepted:
            files = [(path.name, path.read_bytes())]
            prepare_ms[path.name] = _timed(lambda f=files: prepare_upload(f, limits, key), 5)
    result["prepare_upload_median_ms"] = round(statistics.median(prepare_ms.values()), 3)
    result["prepare_upload_ms"] = prepare_ms
    result.update(asyncio.run(_sqlite_floors(scratch)))
    (scratch / "fsync").mkdir()
    result["fsync_4k_file_and_directory_ms"] = _fsync_file_and_directory(scratch / "fsync")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="fresh server pairs, in turn")
    parser.add_argument("--quick", action="store_true", help="one round (under a minute)")
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample MedVision's server with py-spy during round 1 into this file and print "
        "its top entries (slows that round: figures of a profiled run are not comparable)",
    )
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also measure the per-request floors (trivial endpoints, DICOM work, SQL round "
        "trip, commit, fsync) after the rounds",
    )
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    paths = corpus()
    load_before = os.getloadavg()
    samples: dict[str, list[float]] = {"medvision": [], "orthanc": []}
    per_round: list[dict[str, dict[str, Any]]] = []
    refused: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="http-ingest-bench-") as tmp:
        for index in range(rounds):
            print(f"round {index + 1}/{rounds}: {len(paths)} files ...", flush=True)
            profile = args.profile if index == 0 else None
            results = one_round(paths, Path(tmp) / f"round{index}", profile)
            per_round.append(results)
            for name, result in results.items():
                if result["medvision"] == "ok" and result["orthanc"] == "ok":
                    samples["medvision"].append(result["medvision_s"])
                    samples["orthanc"].append(result["orthanc_s"])
                elif index == 0:
                    why = f"MedVision {result['medvision']}, Orthanc {result['orthanc']}"
                    refused[f"{name}: {why}"] += 1
    if not samples["medvision"]:
        sys.exit("no file was accepted by both servers")
    accepted = sum(
        1 for r in per_round[0].values() if r["medvision"] == "ok" and r["orthanc"] == "ok"
    )
    figures = {
        server: {
            "median_ms": round(1e3 * statistics.median(values), 2),
            "p90_ms": round(1e3 * percentile(values, 90), 2),
            "mean_ms": round(1e3 * statistics.fmean(values), 2),
        }
        for server, values in samples.items()
    }
    ratio = round(figures["orthanc"]["median_ms"] / figures["medvision"]["median_ms"], 3)
    floor: dict[str, Any] | None = None
    if args.floors:
        names = [n for n, r in per_round[0].items() if r["medvision"] == r["orthanc"] == "ok"]
        with tempfile.TemporaryDirectory(prefix="http-ingest-floors-") as tmp:
            floor = floors(paths, names, Path(tmp))
    machine, code = describe(), code_under_test()
    load = load_line(load_before)
    print(f"\n{machine}; load average {load}")
    print(f"MedVision code: {code}")
    print(
        f"{accepted} of {len(paths)} pydicom test files accepted by both, {rounds} round(s), "
        f"{len(samples['medvision'])} requests each"
    )
    print(f"{'server':<12}{'median ms':>11}{'p90 ms':>9}{'mean ms':>9}")
    for server, figure in figures.items():
        print(f"{server:<12}{figure['median_ms']:>11}{figure['p90_ms']:>9}{figure['mean_ms']:>9}")
    print(f"ratio (MedVision ÷ Orthanc requests/s, medians): {ratio}")
    for line in sorted(refused):
        print(f"  not counted: {line}")
    if floor is not None:
        print("floors (medians, ms):")
        for name, value in floor.items():
            if not isinstance(value, dict):
                print(f"  {name:<34}{value:>9}")
    record = {
        "bench": "http_ingest",
        "time": datetime.now(UTC).isoformat(),
        "machine": machine,
        "code": code,
        "load": load,
        "rounds": rounds,
        "files": len(paths),
        "accepted_by_both": accepted,
        "figures": figures,
        "ratio_medvision_over_orthanc": ratio,
        "per_round": per_round,
        "floors": floor,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"http_ingest-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    if args.profile is not None:
        print_profile(args.profile)


if __name__ == "__main__":
    main()
