"""The head CT panel of the web workstation in a real headless Chromium against the real stack.

A stack of its own (``tests/fixtures/workstation_stack.py``): tritonserver with the tiny
synthetic networks, ``medvision serve`` serving the built ``web/dist``. The ``ct_head``
post-processing thresholds are lowered to 0.05 so that the tiny untrained network calls every
slice positive and every slice has a heat map to see (above the threshold the server draws
it; below, the map is all zero). A 10-slice synthetic head CT series is uploaded through the
API and read by ``ct_head``; ``web/e2e/ct_head.mjs`` then opens the case, sees a slice image
and its heat map, steps through slices and windows, corrects the label set and signs off.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control.triton import skip_without_triton
from tests.fixtures.workstation_stack import (
    ARTIFACTS,
    E2E_DIR,
    WorkstationStack,
    head_ct_series,
    require_browser_tools,
    run_node,
)

skip_without_triton()

LABELS = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
LOW_THRESHOLD = 0.05


def _repository(scratch: Path) -> Path:
    """The tiny repository with only the ``ct_head`` models (Triton starts faster without the
    others) and every ``ct_head`` threshold at LOW_THRESHOLD."""
    from tests.fixtures.triton_repo import build_tiny_repository, set_parameters

    repository = build_tiny_repository(scratch / "model_repository")
    for model in repository.iterdir():
        if model.is_dir() and not model.name.startswith("ct_head"):
            shutil.rmtree(model)
    thresholds = ",".join([str(LOW_THRESHOLD)] * len(LABELS))
    set_parameters(repository / "ct_head_postprocess", thresholds=thresholds)
    return repository


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    """``(node, chromium)``; skips (fails under CI) without them, before a stack starts."""
    return require_browser_tools()


@pytest.fixture(scope="module")
def stack(
    browser: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkstationStack]:
    scratch = tmp_path_factory.mktemp("head-ct-workstation")
    with WorkstationStack(
        scratch,
        repository=_repository(scratch),
        extra_env={"MEDVISION_CT_SERIES_SETTLE_S": "0.2"},
    ) as running:
        yield running


def test_head_ct_panel_shows_slices_and_heat_maps(
    browser: tuple[str, str], stack: WorkstationStack
) -> None:
    node, chromium = browser
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    [case_id] = stack.upload(head_ct_series(10))["case_ids"]
    case = stack.wait_read(case_id)
    assert case["status"] == "inferred", case
    [finding] = case["findings"]
    assert finding["model"]["name"] == "ct_head" and finding["views"] == ["slice_heatmap"]
    with stack.client(stack.radiologist) as http:
        table = http.get(f"/api/cases/{case_id}/findings/{finding['id']}/per-slice").json()
    anys = [row["probabilities"]["any"] for row in table["slices"]]
    assert all(row["positive"] for row in table["slices"]), table  # every slice has a map

    result = run_node(
        node,
        E2E_DIR / "ct_head.mjs",
        {
            "BASE_URL": stack.base_url,
            "CHROMIUM": chromium,
            "ARTIFACTS": str(ARTIFACTS),
            "RAD_USER": stack.radiologist.username,
            "RAD_PASSWORD": stack.radiologist.password,
            "CT_CASE_ID": case_id,
            "CT_START_SLICE": str(anys.index(max(anys))),
            "CT_SLICES": str(len(anys)),
        },
    )
    print(result.output)
    if result.returncode != 0:
        pytest.fail(
            f"ct_head.mjs exited {result.returncode} after {result.seconds:.0f} s "
            f"(screenshots in {ARTIFACTS}):\n{result.output}\n{stack.log_tail(15)}",
            pytrace=False,
        )

    case = stack.case(case_id)
    assert case["status"] == "signed_off", case["status"]
    [finding] = case["findings"]
    decision = finding["current_decision"]
    assert decision["action"] == "edit" and decision["labels"] == ["any", "subdural"], decision
