"""Drift: PSI/KS maths (case table) and a planted shift seen by ``GET /api/models/cxr/drift``
and the ``medvision_drift_psi`` gauge.

The shift is planted at the level of stored findings (probabilities and input statistics as
the worker records them), without Triton: what drift compares is exactly those rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from control.observability.drift import ks_statistic, psi
from export.drift_reference import (
    build_reference,
    feature_reference,
    input_statistics,
    output_features,
    write_reference,
)
from tests.observability.helpers import add_findings, parse_exposition, upload_chest

LABELS = ("Effusion", "Cardiomegaly")
RNG_SEED = 7


def _samples(n: int, *, prevalence: float, brightness: float, seed: int) -> list[dict]:
    """Synthetic inferences: a positive case scores high; intensity median ~ ``brightness``."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        positive = rng.random() < prevalence
        probabilities = {
            label: float(np.clip(rng.normal(0.8 if positive else 0.15, 0.1), 0, 1))
            for label in LABELS
        }
        image = rng.normal(brightness, 300, (32, 32)).clip(0, 4095).astype(np.uint16)
        samples.append(
            {"probabilities": probabilities, "input_stats": input_statistics(image, [0.14, 0.14])}
        )
    return samples


def _features(samples: list[dict]) -> list[dict[str, float]]:
    return [{**output_features(s["probabilities"]), **s["input_stats"]} for s in samples]


REFERENCE = np.random.default_rng(0).normal(0, 1, 5000)
# (observed values, PSI lower bound, PSI upper bound)
PSI_CASES = [
    (np.random.default_rng(1).normal(0, 1, 2000), 0.0, 0.05),
    (np.random.default_rng(2).normal(0.7, 1, 2000), 0.2, 10.0),
    (np.random.default_rng(3).normal(0, 2, 2000), 0.2, 10.0),
]


@pytest.mark.parametrize(("observed", "low", "high"), PSI_CASES)
def test_psi_of_a_sample_against_a_reference(observed, low, high) -> None:
    ref = feature_reference(REFERENCE)
    assert low <= psi(ref["edges"], ref["proportions"], observed) <= high


def test_ks_statistic_against_the_quantile_sketch_matches_scipy_on_the_full_sample() -> None:
    from scipy.stats import ks_2samp

    observed = np.random.default_rng(4).normal(0.3, 1, 1000)
    sketch = feature_reference(REFERENCE)["quantiles"]
    exact = ks_2samp(observed, REFERENCE).statistic
    assert abs(ks_statistic(sketch, observed) - exact) <= 0.02


def test_input_statistics_of_a_radiograph_and_a_volume() -> None:
    image = np.arange(100, dtype=np.uint16).reshape(10, 10)
    stats = input_statistics(image, [0.2, 0.2])
    assert stats["input:height"] == 10 and stats["input:spacing_mm"] == 0.2
    assert stats["input:intensity_p50"] == pytest.approx(49.5)
    volume = np.zeros((4, 8, 9, 10), np.float32)
    volume[:, 2:4] = 5.0
    stats = input_statistics(volume, [1, 1, 1], channels_first=True)
    assert stats["input:intensity_p01"] == 5.0  # background zeros left out
    assert (stats["input:depth"], stats["input:height"], stats["input:width"]) == (8, 9, 10)


async def test_a_planted_shift_raises_psi_above_the_threshold(
    app, client, accounts, settings, tmp_path
) -> None:
    repository = settings.model_repository
    reference_samples = _features(_samples(600, prevalence=0.1, brightness=1500, seed=RNG_SEED))
    for folder, version in (("1", "cxr-1"), ("2", "cxr-2")):
        write_reference(
            repository / "cxr_net" / folder, build_reference("cxr_net", version, reference_samples)
        )
    case_id = await upload_chest(client, accounts["admin1"])
    # Version 1 sees data like its validation set; version 2 a higher prevalence, brighter images.
    await add_findings(
        app, case_id, "cxr", "cxr-1", _samples(300, prevalence=0.1, brightness=1500, seed=11)
    )
    await add_findings(
        app, case_id, "cxr", "cxr-2", _samples(300, prevalence=0.5, brightness=2300, seed=12)
    )
    response = await client.get("/api/models/cxr/drift", headers=accounts["mlops1"].headers)
    assert response.status_code == 200, response.text
    body = response.json()
    by_version = {v["model_version"]: v for v in body["versions"]}
    assert body["psi_threshold"] == 0.2
    same, shifted = by_version["cxr-1"], by_version["cxr-2"]
    assert same["status"] == "ok"
    assert max(f["psi"] for f in same["features"]) < 0.2
    assert shifted["status"] == "drift"
    psi_of = {f["feature"]: f["psi"] for f in shifted["features"]}
    assert psi_of["probability:Effusion"] > 0.2
    assert psi_of["input:intensity_p50"] > 0.2
    assert psi_of["input:height"] < 0.2  # same image size: no drift there
    await app.state.db_metrics.refresh(force=True)
    samples = parse_exposition((await client.get("/metrics")).text)
    gauge = {
        (ls["version"], ls["feature"]): v
        for ls, v in samples["medvision_drift_psi"]
        if ls["model"] == "cxr"
    }
    assert gauge[("cxr-2", "probability:Effusion")] > 0.2
    assert gauge[("cxr-1", "probability:Effusion")] < 0.2
    ks = {(ls["version"], ls["feature"]): v for ls, v in samples["medvision_drift_ks"]}
    assert ks[("cxr-2", "input:intensity_p50")] > ks[("cxr-1", "input:intensity_p50")]


async def test_drift_of_a_version_without_reference_or_an_unknown_model(
    app, client, accounts
) -> None:
    case_id = await upload_chest(client, accounts["admin1"])
    await add_findings(app, case_id, "cxr", "unreferenced", _samples(5, prevalence=0.1,
                       brightness=1500, seed=1))  # fmt: skip
    headers = accounts["admin1"].headers
    body = (await client.get("/api/models/cxr/drift", headers=headers)).json()
    assert [(v["model_version"], v["status"]) for v in body["versions"]] == [
        ("unreferenced", "no_reference")
    ]
    response = await client.get("/api/models/nope/drift", headers=headers)
    assert response.status_code == 404 and response.json()["code"] == "model_not_found"
