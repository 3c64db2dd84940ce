"""Worklist click → first painted image in the web workstation, against fetch + decode alone;
and window/level drag frames per second. Headless Chromium on this machine.

    .venv/bin/python -m bench.ui_open [--opens 20] [--size 2048] [--drags 3] [--drag-ms 2000]
    .venv/bin/python -m bench.ui_open --quick      # 4 opens of 1024², one 1 s drag

Issue goals: "Time from a click on a case in the worklist to the first image painted, p50/p95
over 20 opens of a 2048×2048 16-bit DX, against the time the same page takes to fetch those
DICOM bytes and decode them (same run): goal ≤ 1.5×. Window/level drag: frames per second
while dragging, goal ≥ 30 in headless Chromium."

The real stack runs as subprocesses (``tests/fixtures/workstation_stack.py``): tritonserver
with the tiny synthetic networks (their 1024² input limit raised to the image size), and
``medvision serve`` (SQLite, filesystem store, in-process worker) serving the built
``web/dist`` (built first if stale). ``--opens`` + 1 DX studies ``chest_dx(size)``
(BitsAllocated 16, explicit VR little endian, uncompressed; each its own study, so no open
finds the image in the viewer's memory cache) are uploaded and read by the AI first.

``web/e2e/bench-ui-open.mjs`` then drives Chromium (``/usr/bin/chromium``, the e2e flags,
1280×720, browser HTTP cache off) as the radiologist. Per case, in alternating order:

- *open*: inside the page, ``performance.now()`` then a click on the worklist's "Open case"
  link; stops when the radiograph viewport's ``data-state`` turns ``ready`` (the viewer sets
  it after the first render showing the image). Back to the worklist between opens (not
  timed). The first case is a warm-up (its "cold" figures are printed apart): it pays for
  the viewer's code chunks, Cornerstone's start-up and its decode workers.
- *fetch + decode*: in the same page, ``fetch`` of ``/api/cases/{id}/instances/{iid}/file``
  with the bearer token, ``dicomParser.parseDicom`` (the dicom-parser build Cornerstone's
  loader uses), a copy of the frame into a typed array and its min/max scan — the work the
  Cornerstone DICOM image loader does for an uncompressed frame, on the main thread without
  the worker hop, so a lower bound of what the viewer must do before it can draw.

The ratio is p50(open) / p50(fetch + decode) (the p95 ratio is printed too).

Drag: on the last opened image, right button held (window/level) for ``--drag-ms``; fps =
increase of the viewport's ``data-renders`` (Cornerstone render events) over that time;
median of ``--drags`` runs, two ways: *in page* (the goal's figure), one synthetic mousemove
per animation frame, as a mouse reporting at the display rate (so at most 60); and *CDP*,
Chromium's real input path with each mouse move awaited until the renderer handled it (input
and rendering alternate: the conservative figure). Headless Chromium renders WebGL in
software (SwiftShader, ``--disable-gpu``), so both are CPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``python bench/ui_open.py`` as well as ``python -m bench.ui_open``
    sys.path.insert(0, str(ROOT))

from bench.stack import load_line, percentile  # noqa: E402

OPEN_GOAL = 1.5
FPS_GOAL = 30.0
SCRIPT = "bench-ui-open.mjs"


def upload_cases(stack: Any, count: int, size: int) -> list[dict[str, str]]:
    """``count`` single-image DX studies, read by the AI: their case and instance ids."""
    from tests.fixtures.dx import chest_dx

    cases = []
    for i in range(count):
        body = stack.upload([(f"dx-{i}.dcm", chest_dx(size, seed=i, patient_id=f"UI-{i:03d}"))])
        cases.append(body["case_ids"][0])
        print(f"  uploaded {i + 1}/{count}", end="\r", flush=True)
    print()
    out = []
    for case_id in cases:
        case = stack.wait_read(case_id, timeout_s=300)
        if case["status"] != "inferred":
            raise RuntimeError(f"case {case_id} is {case['status']}: {case.get('status_reason')}")
        [instance] = [i for s in case["series"] for i in s["instances"]]
        out.append({"case_id": case_id, "instance_id": instance["id"]})
    return out


def phase_medians(phases: list[dict[str, list[int] | None]]) -> str:
    """Median start and end (ms after the click) of an open's case JSON and DICOM requests."""
    parts = []
    for key, name in (("case_json", "case JSON"), ("dicom_file", "DICOM file")):
        spans = [p[key] for p in phases if p.get(key)]
        if spans:
            start = statistics.median(s[0] for s in spans if s)
            end = statistics.median(s[1] for s in spans if s)
            parts.append(f"{name} request {start:.0f}–{end:.0f}")
    return ", ".join(parts) + "; then decode and first render" if parts else "not recorded"


def chromium_version(chromium: str) -> str:
    found = subprocess.run(  # noqa: S603 (the browser binary we located)
        [chromium, "--version"], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or chromium


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--opens", type=int, default=20, help="measured opens (after 1 warm-up)")
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels")
    parser.add_argument("--drags", type=int, default=3, help="window/level drags measured")
    parser.add_argument("--drag-ms", type=int, default=2000, help="length of each drag")
    parser.add_argument("--quick", action="store_true", help="4 opens of 1024², one 1 s drag")
    args = parser.parse_args()
    if args.quick:
        args.opens, args.size, args.drags, args.drag_ms = 4, 1024, 1, 1000

    from bench.machine import describe
    from tests.fixtures.workstation_stack import (
        ARTIFACTS,
        E2E_DIR,
        WorkstationStack,
        ensure_web_build,
        find_chromium,
        find_node,
        playwright_missing,
        run_node,
    )

    started = time.perf_counter()
    node, chromium = find_node(), find_chromium()
    missing = playwright_missing()
    if node is None or chromium is None or missing:
        sys.exit(f"needs Node.js >= 20 ({node}), Chromium ({chromium}) and {missing or 'ok'}")
    ensure_web_build(node)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="medvision-bench-ui-") as tmp:
        scratch = Path(tmp)
        print("starting Triton and medvision serve ...", flush=True)
        with WorkstationStack(scratch / "stack", cxr_max_pixels=args.size * args.size) as stack:
            print(f"uploading {args.opens + 1} chest_dx({args.size}) studies ...", flush=True)
            cases = upload_cases(stack, args.opens + 1, args.size)
            out = scratch / "ui_open.json"
            print("driving Chromium ...", flush=True)
            result = run_node(
                node,
                E2E_DIR / SCRIPT,
                {
                    "BASE_URL": stack.base_url,
                    "CHROMIUM": chromium,
                    "ARTIFACTS": str(ARTIFACTS),
                    "RAD_USER": stack.radiologist.username,
                    "RAD_PASSWORD": stack.radiologist.password,
                    "CASES": json.dumps(cases),
                    "DRAGS": str(args.drags),
                    "DRAG_MS": str(args.drag_ms),
                    "OUT": str(out),
                },
                timeout_s=60 + 60 * (args.opens + 1) + args.drags * (args.drag_ms / 1e3 + 30),
            )
            print(result.output, flush=True)
            if result.returncode != 0:
                sys.exit(f"{SCRIPT} failed ({result.returncode}); serve log:\n{stack.log_tail()}")
            measured = json.loads(out.read_text())

    opens, baselines = measured["open_ms"], measured["baseline_ms"]
    fps_runs = [run["fps"] for run in measured["page_drags"]]
    cdp_runs = [run["fps"] for run in measured["drags"]]
    open_p50, open_p95 = statistics.median(opens), percentile(opens, 95)
    base_p50, base_p95 = statistics.median(baselines), percentile(baselines, 95)
    ratio, ratio_p95 = open_p50 / base_p50, open_p95 / base_p95
    fps, cdp_fps = statistics.median(fps_runs), statistics.median(cdp_runs)
    phases = phase_medians(measured["open_phases"])
    rows = [
        ("machine", describe()),
        ("browser", f"{chromium_version(chromium)} headless, --disable-gpu (software WebGL)"),
        ("load average", load_line(load_before)),
        (
            "image",
            f"DX {args.size}x{args.size} 16-bit (tests/fixtures/dx.py chest_dx), "
            "uncompressed, one per study",
        ),
        (
            "stack",
            "medvision serve (SQLite, filesystem store) + tritonserver (tiny synthetic "
            "networks), all on this host; browser HTTP cache off",
        ),
        (
            f"click → first image painted, {len(opens)} opens (ms)",
            f"p50 {open_p50:.0f}, p95 {open_p95:.0f}, max {max(opens):.0f}",
        ),
        (
            "fetch + decode in the same page (ms)",
            f"p50 {base_p50:.0f}, p95 {base_p95:.0f}, max {max(baselines):.0f}",
        ),
        ("where an open's time goes (p50, ms after the click)", phases),
        (
            "warm-up open (cold viewer) / its fetch + decode (ms)",
            f"{measured['cold_open_ms']:.0f} / {measured['cold_baseline_ms']:.0f}",
        ),
        (
            f"ratio open / fetch+decode (goal ≤ {OPEN_GOAL})",
            f"p50 {ratio:.2f} ({'met' if ratio <= OPEN_GOAL else 'NOT met'}), p95 {ratio_p95:.2f}",
        ),
        (
            f"window/level drag fps, in page (goal ≥ {FPS_GOAL:g})",
            f"median {fps:.1f} of {fps_runs} ({'met' if fps >= FPS_GOAL else 'NOT met'})",
        ),
        (
            "window/level drag fps, CDP mouse moves",
            f"median {cdp_fps:.1f} of {cdp_runs}",
        ),
        ("benchmark wall time (web build included)", f"{time.perf_counter() - started:.0f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    print("\n```\n" + "\n".join(f"{label:<{width}}  {value}" for label, value in rows) + "\n```")
    record = {
        "benchmark": "ui_open",
        "machine": describe(),
        "browser": chromium_version(chromium),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "size": args.size,
        "opens": len(opens),
        "open_ms": {"p50": round(open_p50, 1), "p95": round(open_p95, 1)},
        "fetch_decode_ms": {"p50": round(base_p50, 1), "p95": round(base_p95, 1)},
        "cold_open_ms": round(measured["cold_open_ms"], 1),
        "open_phases_p50": phases,
        "ratio_p50": round(ratio, 3),
        "ratio_p95": round(ratio_p95, 3),
        "open_goal": OPEN_GOAL,
        "open_goal_met": ratio <= OPEN_GOAL,
        "drag_fps": fps_runs,
        "drag_fps_median": fps,
        "drag_fps_cdp": cdp_runs,
        "drag_fps_cdp_median": cdp_fps,
        "fps_goal": FPS_GOAL,
        "fps_goal_met": fps >= FPS_GOAL,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
