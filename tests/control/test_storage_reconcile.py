"""``medvision storage reconcile``: objects no row references are found and removed (#11 item 12).

A process killed between writing an upload's objects and committing its rows leaves them
behind; the kill -9 case is simulated with a real process that dies inside ``put``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from control.storage import FilesystemStore
from control.storage.reconcile import reconcile
from tests.control.domain.test_studies import read_testdata, upload

CLI = [sys.executable, "-m", "control.cli.main"]
ORPHAN = "studies/2.25.1/series/2.25.2/instances/2.25.3.dcm"


def _age(store: FilesystemStore, key: str, seconds: float) -> None:
    path = store.root.joinpath(*key.split("/"))
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_reconcile_removes_only_old_unreferenced_objects(app, client, accounts):
    store: FilesystemStore = app.state.store
    stored = await upload(
        client, accounts["pacs1"].headers, ("ct.dcm", read_testdata("CT_small.dcm"))
    )
    assert stored.status_code == 201, stored.text
    referenced = await store.list_keys("studies/")
    young = "derived/cases/x/masks/young.nii.gz"
    await store.put(ORPHAN, b"left behind")
    await store.put(young, b"an upload still committing")
    await store.put("audit/checkpoints/keep.json", b"{}")
    _age(store, ORPHAN, 7200)
    for key in referenced:
        _age(store, key, 7200)

    async with app.state.session_factory() as session:
        report = await reconcile(session, store, grace_s=3600)

    assert report.orphans == [ORPHAN] and report.removed == 1 and report.too_young == 1
    assert not await store.exists(ORPHAN)
    assert all([await store.exists(key) for key in referenced])
    assert await store.exists(young)
    assert await store.exists("audit/checkpoints/keep.json")


_KILLED_UPLOAD = textwrap.dedent(
    """
    import os, signal, sys
    from control.storage.filesystem import FilesystemStore
    original = FilesystemStore._put_many_sync  # the ingest writes its objects in one call

    def put_then_die(self, objects, paths):
        result = original(self, objects, paths)
        if any(item.key.startswith("studies/") for item in objects):
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 after the object, before the rows
        return result

    FilesystemStore._put_many_sync = put_then_die
    from control.cli.main import app
    sys.argv = ["medvision", "ingest", sys.argv[1]]
    app()
    """
)


def test_kill_9_leftover_is_reconciled_by_the_command(tmp_path: Path):
    source = tmp_path / "ct.dcm"
    source.write_bytes(read_testdata("CT_small.dcm"))
    env = {
        **os.environ,
        "MEDVISION_DATA_DIR": str(tmp_path / "var"),
        "MEDVISION_SECRET_KEY": "c" * 40,
    }
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_UPLOAD, str(source)], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    objects = tmp_path / "var" / "objects"
    leftovers = [p for p in objects.rglob("*.dcm")] if objects.exists() else []
    if not leftovers:
        leftovers = [p for p in (tmp_path / "var").rglob("*.dcm")]
    assert len(leftovers) == 1, "the killed upload should have left its object behind"

    dry = subprocess.run(
        [*CLI, "storage", "reconcile", "--grace-s", "0", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert "1 orphans found" in dry.stdout
    assert leftovers[0].exists()

    result = subprocess.run(
        [*CLI, "storage", "reconcile", "--grace-s", "0"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "1 orphans removed" in result.stdout
    assert not leftovers[0].exists()

    kept = subprocess.run([*CLI, "storage", "reconcile"], env=env, capture_output=True, text=True)
    assert "0 orphans removed" in kept.stdout


async def test_start_up_removes_old_orphans(settings):
    from litestar.testing import AsyncTestClient

    from control.app import create_app

    store = FilesystemStore(settings.storage_dir)
    await store.put(ORPHAN, b"left behind")
    _age(store, ORPHAN, 7200)
    async with AsyncTestClient(app=create_app(settings)) as started:
        assert (await started.get("/health")).status_code == 200
    assert not await store.exists(ORPHAN)
