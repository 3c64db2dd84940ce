"""PACS ingest: the same N instances into MedVision and into Orthanc, by C-STORE and STOW-RS.

    .venv/bin/python -m bench.pacs_ingest [--n 500] [--ct-size 512] [--dx-size 2048]
        [--stow-batch 25] [--no-stow | --no-cstore] [--ingest-processes N] [--profile FILE]
        [--quick] [--out var/bench]

Issue #10 goal: "C-STORE ingest of the same 500 instances (512×512 CT and 2048² DX, one
association) into MedVision (de-identification, hashing, storage, routing included) and
into Orthanc on the same machine: instances per second, ratio goal ≥ 1.0. STOW-RS the same
way."

Instances (generated, no patient data): ``n // 2`` CT slices of ``--ct-size``² (series of
100 slices, one study per series) and the rest ``--dx-size``² DX chest radiographs (one study
each), Explicit VR Little Endian, written to a scratch directory first.

C-STORE: DCMTK ``storescu`` (``TCP_NODELAY=1``) sends all of them in one association, to
``medvision dicom listen`` (SQLite and filesystem store in a fresh data directory, no
Triton: the cases are queued for inference, nobody runs them) and to Orthanc (Debian
package, loopback-only, ``TCP_NODELAY=1``, fresh storage). Orthanc answers each C-STORE after
storing; MedVision answers after validating and durably spooling, and stores in batches, so
its figure is taken when the last instance is committed to the database (the
"acknowledged" time, when storescu finished, is reported beside it).

STOW-RS: ``POST /dicomweb/studies`` (``multipart/related; type="application/dicom"``,
``--stow-batch`` instances per request, one request at a time, bearer token of an
integration account) into ``medvision serve`` on a fresh data directory (worker off, Triton
not required), and ``POST /dicom-web/studies`` into a fresh Orthanc.

``--quick`` sends 40 instances (CT 256², DX 1024², 10 per STOW request): a minute at most,
for a developer before and after a change; the README figures come from the full run.

Prints a table, the machine and the load average, writes ``--out/pacs_ingest-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydicom.uid import generate_uid

from bench.machine import describe
from bench.profile import print_profile, sampled
from bench.stack import load_line
from control.triton.server import find_free_ports
from tests.fixtures.ct import ct_slice
from tests.fixtures.dicom_listener import (
    PASSWORD,
    ListenerNode,
    create_account,
    medvision,
    node_env,
    start_listener,
)
from tests.fixtures.dx import chest_dx
from tests.fixtures.orthanc import Orthanc, start_orthanc

CT_SERIES_LENGTH = 100
ACCOUNT = "pacs-bridge"


def generate(directory: Path, n: int, ct_size: int, dx_size: int) -> list[Path]:
    """Write the N instances: CT slices first (series of :data:`CT_SERIES_LENGTH`), then DX."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    n_ct = n // 2
    study = series = ""
    for index in range(n_ct):
        if index % CT_SERIES_LENGTH == 0:
            study, series = generate_uid(), generate_uid()
        path = directory / f"ct{index:05d}.dcm"
        path.write_bytes(
            ct_slice(
                ct_size,
                study_uid=study,
                series_uid=series,
                index=index % CT_SERIES_LENGTH,
                seed=index,
            )
        )
        paths.append(path)
    for index in range(n - n_ct):
        path = directory / f"dx{index:05d}.dcm"
        path.write_bytes(chest_dx(dx_size, seed=index, patient_id=f"SYNTH-DX-{index}"))
        paths.append(path)
    return paths


def storescu(paths: list[Path], calling_ae: str, called_ae: str, port: int) -> float:
    """Send all ``paths`` in one association; seconds from start to storescu's exit."""
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (DCMTK's storescu, our own arguments)
        ["storescu", "-aet", calling_ae, "-aec", called_ae, "127.0.0.1", str(port)]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        timeout=3600,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "Store Failed" in done.stderr:
        raise RuntimeError(f"storescu failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def stored_instances(node: ListenerNode) -> int:
    return int(node.query("SELECT count(*) FROM instances")[0][0])


def cstore_medvision(
    paths: list[Path], scratch: Path, profile: Path | None = None, processes: int | None = None
) -> dict[str, Any]:
    """C-STORE into the listener; seconds until acknowledged and until all committed. With
    ``profile``, py-spy samples the listener and its ingest processes into that file;
    ``processes`` sets ``MEDVISION_DICOM_INGEST_PROCESSES`` (None: the default)."""
    env = {} if processes is None else {"MEDVISION_DICOM_INGEST_PROCESSES": str(processes)}
    accounts = {"BENCH": (ACCOUNT, "integration")}
    with (
        start_listener(scratch / "medvision-cstore", accounts, extra_env=env) as node,
        sampled(node.process.pid, profile, subprocesses=True),
    ):
        started = time.perf_counter()
        acknowledged = storescu(paths, "BENCH", node.ae_title, node.port)
        while stored_instances(node) < len(paths):
            node.check_alive()
            if time.perf_counter() - started > 3600:
                raise RuntimeError("the listener did not store every instance")
            time.sleep(0.05)
        stored = time.perf_counter() - started
        cases = int(node.query("SELECT count(*) FROM cases")[0][0])
    return {"acknowledged_s": acknowledged, "stored_s": stored, "cases": cases}


def cstore_orthanc(paths: list[Path], scratch: Path) -> dict[str, Any]:
    with start_orthanc(scratch / "orthanc-cstore") as pacs:
        elapsed = storescu(paths, "BENCH", pacs.aet, pacs.dicom_port)
        count = int(pacs.get_json("/statistics")["CountInstances"])
    if count != len(paths):
        raise RuntimeError(f"Orthanc holds {count} instances, {len(paths)} were sent")
    return {"stored_s": elapsed}


def multipart(paths: list[Path]) -> tuple[bytes, str]:
    """A ``multipart/related; type="application/dicom"`` body of the files, and its type."""
    boundary = uuid.uuid4().hex
    chunks = []
    for path in paths:
        chunks += [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            path.read_bytes(),
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type


def stow(url: str, paths: list[Path], batch: int, headers: dict[str, str]) -> float:
    """STOW-RS every path, ``batch`` per request, one request at a time; seconds."""
    elapsed = 0.0
    with httpx.Client(timeout=600) as client:
        for start in range(0, len(paths), batch):
            body, content_type = multipart(paths[start : start + batch])
            began = time.perf_counter()
            response = client.post(
                url,
                content=body,
                headers={
                    **headers,
                    "Content-Type": content_type,
                    "Accept": "application/dicom+json",
                },
            )
            elapsed += time.perf_counter() - began
            if response.status_code != 200:
                raise RuntimeError(f"STOW-RS {url}: {response.status_code} {response.text[:500]}")
    return elapsed


def code_under_test() -> str:
    """Which ``control`` package the MedVision servers run (they start from this process's
    working directory, as it imported ``control``) and that checkout's commit."""
    import control

    root = Path(control.__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run(  # noqa: S603 (git, our own arguments)
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(  # noqa: S603
            [*git, "status", "--porcelain", "--", "control"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{root} (not a git checkout)"
    return f"{root} at {commit}" + (" with local changes to control/" if changed else "")


@contextlib.contextmanager
def medvision_serve(
    scratch: Path, profile: Path | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """``medvision serve`` on a fresh data directory (worker off, Triton not required);
    yields its base URL and the integration account's bearer header.

    With ``profile``, ``py-spy`` (on the PATH; ``pip install py-spy``) samples the server,
    every thread, from the moment it answers until the block ends, and writes its collapsed
    stacks (``--format raw``) to that file.
    """
    data_dir = scratch / "medvision-stow" / "var"
    data_dir.mkdir(parents=True)
    create_account(data_dir, ACCOUNT, "integration")
    (port,) = find_free_ports(1)
    env = node_env(
        data_dir,
        MEDVISION_WORKER_ENABLED="false",
        MEDVISION_LOG_LEVEL="WARNING",
        MEDVISION_ACCESS_TOKEN_TTL_S="7200",
    )
    log = (scratch / "serve.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (our own CLI)
        [*medvision(), "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("medvision serve did not start")
            time.sleep(0.2)
        token = httpx.post(
            f"{base}/api/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": ACCOUNT,
                "client_secret": PASSWORD,
            },
        ).json()["access_token"]
        with sampled(process.pid, profile):
            yield base, {"Authorization": f"Bearer {token}"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def stow_medvision(
    paths: list[Path], scratch: Path, batch: int, profile: Path | None = None
) -> dict[str, Any]:
    with medvision_serve(scratch, profile) as (base, headers):
        probe = httpx.post(f"{base}/dicomweb/studies", headers=headers, content=b"")
        if probe.status_code in (404, 405):
            return {"skipped": f"POST /dicomweb/studies answered {probe.status_code}"}
        return {"stored_s": stow(f"{base}/dicomweb/studies", paths, batch, headers)}


def stow_orthanc(paths: list[Path], scratch: Path, batch: int) -> dict[str, Any]:
    pacs: Orthanc
    with start_orthanc(scratch / "orthanc-stow") as pacs:
        return {"stored_s": stow(f"{pacs.dicomweb_url}/studies", paths, batch, {})}


def cstore_profile(profile: Path | None) -> Path | None:
    """Where the C-STORE run's profile goes: beside ``profile``, named ``<stem>-cstore``."""
    return None if profile is None else profile.with_name(f"{profile.stem}-cstore{profile.suffix}")


def rate(n: int, result: dict[str, Any]) -> float | None:
    seconds = result.get("stored_s")
    return round(n / seconds, 1) if seconds else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500, help="instances (half CT, half DX)")
    parser.add_argument("--ct-size", type=int, default=512)
    parser.add_argument("--dx-size", type=int, default=2048)
    parser.add_argument("--stow-batch", type=int, default=25, help="instances per STOW request")
    parser.add_argument("--no-stow", action="store_true", help="C-STORE only")
    parser.add_argument("--no-cstore", action="store_true", help="STOW-RS only")
    parser.add_argument(
        "--ingest-processes",
        type=int,
        default=None,
        help="the listener's MEDVISION_DICOM_INGEST_PROCESSES (default: its default)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample MedVision's server with py-spy during STOW-RS into this file, and the "
        "listener with its ingest processes during C-STORE beside it (its stem + -cstore), "
        "and print their "
        "top entries (slows them: figures of a profiled run are not comparable)",
    )
    parser.add_argument("--quick", action="store_true", help="40 small instances, a minute")
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    args = parser.parse_args()
    if args.quick:
        args.n, args.ct_size, args.dx_size, args.stow_batch = 40, 256, 1024, 10
    if shutil.which("storescu") is None:
        sys.exit("needs DCMTK's storescu (Debian package dcmtk)")

    with tempfile.TemporaryDirectory(prefix="pacs-bench-") as tmp:
        scratch = Path(tmp)
        print(f"generating {args.n} instances ...", flush=True)
        paths = generate(scratch / "instances", args.n, args.ct_size, args.dx_size)
        load_before = os.getloadavg()
        total_bytes = sum(p.stat().st_size for p in paths)
        results: dict[str, dict[str, Any]] = {}
        cstore_raw = cstore_profile(args.profile)
        if not args.no_cstore:
            print("C-STORE into MedVision ...", flush=True)
            results["cstore_medvision"] = cstore_medvision(
                paths, scratch, cstore_raw, args.ingest_processes
            )
            print("C-STORE into Orthanc ...", flush=True)
            results["cstore_orthanc"] = cstore_orthanc(paths, scratch)
        if not args.no_stow:
            print("STOW-RS into MedVision ...", flush=True)
            results["stow_medvision"] = stow_medvision(
                paths, scratch, args.stow_batch, args.profile
            )
            print("STOW-RS into Orthanc ...", flush=True)
            results["stow_orthanc"] = stow_orthanc(paths, scratch, args.stow_batch)

    n = args.n
    rows = []
    ratios: dict[str, float | None] = {}
    for protocol in ("cstore", "stow"):
        mine, theirs = results.get(f"{protocol}_medvision"), results.get(f"{protocol}_orthanc")
        if mine is None or theirs is None:
            continue
        mv, oc = rate(n, mine), rate(n, theirs)
        ratios[protocol] = round(mv / oc, 2) if mv and oc else None
        name = "C-STORE (1 association)" if protocol == "cstore" else "STOW-RS"
        rows.append((name, mv, oc, ratios[protocol], mine.get("skipped", "")))
    machine, code = describe(), code_under_test()
    load = load_line(load_before)
    print(
        f"\n{n} instances ({n // 2} CT {args.ct_size}², {n - n // 2} DX {args.dx_size}², "
        f"{total_bytes / 2**20:.0f} MiB); {machine}; load average {load}"
    )
    print(f"MedVision code: {code}")
    print(f"{'protocol':<26}{'MedVision/s':>12}{'Orthanc/s':>11}{'ratio':>8}")
    for name, mv, oc, ratio, note in rows:
        print(f"{name:<26}{mv or '-':>12}{oc or '-':>11}{ratio or '-':>8}  {note}")
    if "cstore_medvision" in results:
        acknowledged = results["cstore_medvision"]["acknowledged_s"]
        print(
            f"(MedVision C-STORE acknowledged all after {acknowledged:.1f} s = "
            f"{n / acknowledged:.1f}/s; stored all after "
            f"{results['cstore_medvision']['stored_s']:.1f} s)"
        )
    record = {
        "bench": "pacs_ingest",
        "time": datetime.now(UTC).isoformat(),
        "machine": machine,
        "code": code,
        "load": load,
        "n": n,
        "ct_size": args.ct_size,
        "dx_size": args.dx_size,
        "bytes": total_bytes,
        "stow_batch": args.stow_batch,
        "results": results,
        "instances_per_s": {key: rate(n, value) for key, value in results.items()},
        "ratio_medvision_over_orthanc": ratios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"pacs_ingest-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    if cstore_raw is not None and cstore_raw.exists():
        print_profile(cstore_raw, what="medvision dicom listen and its ingest process")
    if args.profile is not None and args.profile.exists():
        print_profile(args.profile)


if __name__ == "__main__":
    main()
