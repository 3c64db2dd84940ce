"""Plot every Grafana dashboard panel's queries from a real Prometheus scraping a live stack.

Grafana cannot be installed on the development machines, so the dashboards' own PromQL is
evaluated by a real Prometheus instead and drawn with matplotlib, one figure per dashboard
(``docs/monitoring/<dashboard>.png``). The stack is the one the tests use (Triton with the
tiny synthetic networks, ``medvision serve`` with its worker, SQLite) and the traffic is
generated: chest radiographs uploaded in waves, radiologist decisions (mostly accepted,
some rejected or edited), sign-offs; halfway, the first half's inferences are written as the
``cxr`` drift reference and the radiographs become brighter, so the drift panels have data.

    .venv/bin/python -m deploy.grafana.plot_panels [--minutes 4] [--out docs/monitoring]

Needs the ``prometheus`` binary (Debian package) and the project's test fixtures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "medvision.rules.yml"
#: Grafana's template variables as this script resolves them.
VARIABLES = {"__rate_interval": "1m", "model": ".*", "datasource": ""}


def _start_prometheus(api: str, triton: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "medvision-api", "static_configs": [{"targets": [api]}]},
            {"job_name": "triton", "static_configs": [{"targets": [triton]}]},
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))
    # A fixed argument list, no shell; the Debian package's binary on PATH.
    return subprocess.Popen(  # noqa: S603
        [  # noqa: S607
            "prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _brighter(data: bytes, factor: float) -> bytes:
    """The radiograph with its stored values scaled by ``factor`` (a planted input shift)."""
    import io

    import numpy as np
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    limit = 2 ** int(ds.BitsStored) - 1
    pixels = np.clip(ds.pixel_array.astype(np.float64) * factor, 0, limit)
    ds.PixelData = pixels.astype(ds.pixel_array.dtype).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _read_and_decide(stack: Any, case_id: str, rng: random.Random) -> dict[str, Any]:
    """Wait for the AI reading; most cases are then decided, and most of those signed off."""
    case: dict[str, Any] = stack.wait_read(case_id)
    if case["status"] != "inferred" or rng.random() < 0.2:
        return case
    with stack.client(stack.radiologist) as http:
        if not http.post(f"/api/cases/{case_id}/claim").is_success:
            return case
        for finding in case["findings"]:
            action = rng.choices(["accept", "reject", "edit"], [0.7, 0.2, 0.1])[0]
            body: dict[str, Any] = {"action": action}
            if action == "reject":
                body["reason"] = "not seen on the image"
            if action == "edit":
                body["labels"] = ["Effusion"]
                body["reason"] = "effusion only"
            http.post(f"/api/cases/{case_id}/findings/{finding['id']}/decisions", json=body)
        if rng.random() < 0.7:
            version = http.get(f"/api/cases/{case_id}").json()["version"]
            http.post(f"/api/cases/{case_id}/sign-off", json={"version": version})
    return case


def _write_drift_reference(stack: Any, samples: list[tuple[bytes, dict[str, Any]]]) -> None:
    """A ``cxr`` drift reference made from the first phase's inferences, as an export would."""
    import io

    import pydicom

    from export.drift_reference import (
        build_reference,
        input_statistics,
        output_features,
        radiograph_values,
        write_reference,
    )

    features, version = [], None
    for data, case in samples:
        values = radiograph_values(pydicom.dcmread(io.BytesIO(data)))
        for finding in case["findings"]:
            version = finding["model"]["version"]
            probabilities = finding["probabilities"]
            features.append({**output_features(probabilities), **input_statistics(values)})
    if features and version:
        reference = build_reference("cxr", version, features)
        write_reference(stack.scratch / "model_repository" / "cxr_net", reference)


def _traffic(stack: Any, minutes: float, seed: int) -> None:
    """Uploads in waves, decisions on the inferred cases, some sign-offs. The first half's
    inferences become the ``cxr`` drift reference; the second half's radiographs are brighter
    (a planted input shift the drift panels show)."""
    from tests.fixtures.dx import chest_dx

    rng = random.Random(seed)  # noqa: S311 (traffic shape, not security)
    started = time.monotonic()
    half, deadline = started + minutes * 30, started + minutes * 60
    reference_samples: list[tuple[bytes, dict[str, Any]]] = []
    shifted, wave = False, 0
    while time.monotonic() < deadline:
        if not shifted and time.monotonic() > half:
            _write_drift_reference(stack, reference_samples)
            shifted = True
        wave += 1
        for index in range(rng.randint(1, 3)):
            data = chest_dx(128, seed=wave * 10 + index)
            if shifted:
                data = _brighter(data, 1.8)
            body = stack.upload([(f"w{wave}-{index}.dcm", data)])
            case = _read_and_decide(stack, str(body["case_ids"][0]), rng)
            if not shifted and case["status"] in ("inferred", "in_review", "signed_off"):
                reference_samples.append((data, case))
        time.sleep(rng.uniform(2, 8))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard.get("panels", []) if panel.get("targets")]


def _resolve(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), m.group(0)), expr)


def _query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": _resolve(expr), "start": start, "end": end, "step": "5s"},
        timeout=30,
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _legend(metric: dict[str, str], template: str | None) -> str:
    if template:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template)
    labels = {k: v for k, v in metric.items() if k not in ("__name__", "job", "instance")}
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "value"


def plot_dashboard(path: Path, prometheus: str, start: float, end: float, out: Path) -> Path:
    """One PNG with a plot per panel of ``path``, the series of its queries over the run."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    dashboard = json.loads(path.read_text())
    panels = _panels(dashboard)
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(13, 3.4 * rows), squeeze=False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        drawn = 0
        for target in panel["targets"]:
            for series in _query_range(prometheus, target["expr"], start, end):
                times = [datetime.fromtimestamp(float(t), UTC) for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                label = _legend(series["metric"], target.get("legendFormat"))
                axis.plot(times, values, label=label)
                drawn += 1
        axis.set_title(panel["title"], fontsize=9, loc="left")
        query = "\n".join(
            textwrap.shorten(_resolve(t["expr"]), 120, placeholder=" …") for t in panel["targets"]
        )
        axis.text(
            0, -0.3, query, transform=axis.transAxes, fontsize=6, family="monospace", va="top"
        )
        axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        axis.tick_params(labelsize=7)
        if drawn:
            axis.legend(fontsize=6, loc="upper left")
        else:
            axis.text(0.5, 0.5, "no data in this run", ha="center", transform=axis.transAxes)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.suptitle(f"{dashboard['title']} — Prometheus, live stack, {len(panels)} panels")
    figure.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    target_path = out / f"{path.stem}.png"
    figure.savefig(target_path, dpi=80)
    plt.close(figure)
    return target_path


def main() -> None:
    from control.triton.server import find_free_port
    from tests.fixtures.workstation_stack import WorkstationStack, _terminate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="traffic before plotting")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "monitoring")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with WorkstationStack(folder / "stack", web_dir=folder / "no-web") as stack:
            port = find_free_port()
            triton = stack._triton
            prometheus_process = _start_prometheus(
                stack.base_url.removeprefix("http://"),
                f"{triton.host}:{triton.metrics_port}",
                folder,
                port,
            )
            prometheus = f"http://127.0.0.1:{port}"
            try:
                start = time.time()
                _traffic(stack, args.minutes, args.seed)
                time.sleep(10)  # two more scrapes and rule evaluations
                end = time.time()
                for path in sorted(DASHBOARDS.glob("*.json")):
                    print(plot_dashboard(path, prometheus, start, end, args.out))
            finally:
                _terminate(prometheus_process)


if __name__ == "__main__":
    main()
