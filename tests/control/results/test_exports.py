"""``GET /api/cases/{id}/exports`` and what sign-off queues: one export per destination and
result object, visible to whoever sees the case; skipped with a reason where nothing can be
sent; nothing at all without destinations. SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from control.config import Settings
from control.db.models import FindingKind
from tests.control.domain.test_review import _infer
from tests.control.results.signed_cases import (
    destination_settings,
    identified_dx,
    inferred_cxr_case,
    sign_off,
)
from tests.fixtures.uploads import four_channel_nifti, label_map_nifti, upload

DESTINATIONS = [
    {"name": "pacs", "type": "c-store", "host": "127.0.0.1", "port": 1, "ae_title": "PACS"},
    {"name": "archive", "type": "stow-rs", "url": "http://127.0.0.1:1/dicom-web", "token": "t"},
]
FIELDS = {
    "id",
    "destination",
    "kind",
    "object",
    "finding_id",
    "sop_instance_uid",
    "status",
    "attempts",
    "last_error",
    "sent_at",
    "created_at",
}


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    return destination_settings(database_url, tmp_path, DESTINATIONS)


async def _exports(client, account, case_id: str, expected: int = 200) -> list[dict]:
    response = await client.get(f"/api/cases/{case_id}/exports", headers=account.headers)
    assert response.status_code == expected, response.text
    return response.json() if expected == 200 else []


async def test_sign_off_queues_one_export_per_destination(app, client, accounts):
    rad1 = accounts["rad1"]
    case_id, finding_id = await inferred_cxr_case(app, client, accounts, identified_dx())
    assert await _exports(client, rad1, case_id) == []  # nothing before sign-off

    await sign_off(client, rad1, case_id, {finding_id: {"action": "accept"}})

    exports = await _exports(client, rad1, case_id)
    assert sorted(e["destination"] for e in exports) == ["archive", "pacs"]
    for export in exports:
        assert set(export) == FIELDS
        assert export["kind"] == "sr" and export["object"] == "cxr-sr"
        assert export["finding_id"] == finding_id
        assert export["status"] == "pending" and export["attempts"] == 0
        assert export["last_error"] is None and export["sent_at"] is None
    # One object, one SOP Instance UID, whichever destination it goes to.
    assert len({e["sop_instance_uid"] for e in exports}) == 1


async def test_exports_are_visible_to_whoever_sees_the_case(app, client, accounts):
    rad1, rad2 = accounts["rad1"], accounts["rad2"]
    case_id, finding_id = await inferred_cxr_case(app, client, accounts, identified_dx())
    await sign_off(client, rad1, case_id, {finding_id: {"action": "accept"}})

    assert len(await _exports(client, rad1, case_id)) == 2
    assert len(await _exports(client, accounts["admin1"], case_id)) == 2
    await _exports(client, rad2, case_id, expected=404)  # another radiologist's case
    await _exports(client, accounts["pacs1"], case_id, expected=403)
    await _exports(client, accounts["mlops1"], case_id, expected=403)
    await _exports(client, rad1, "00000000-0000-0000-0000-000000000000", expected=404)


async def test_a_nifti_study_cannot_go_to_a_pacs(app, client, accounts):
    """A NIfTI upload has no original header: its objects are listed as skipped, with why."""
    body = await upload(client, accounts["pacs1"], ("brain.nii.gz", four_channel_nifti()))
    [case_id] = body["case_ids"]
    labels = np.zeros((16, 16, 12), dtype=np.uint8)
    labels[4:8, 4:8, 3:6] = 2
    key = f"derived/cases/{case_id}/jobs/test/segmentation.nii.gz"
    await app.state.store.put(key, label_map_nifti(labels))
    [finding_id] = await _infer(
        app, case_id, ("volume", FindingKind.SEGMENTATION, {"segmentation": key})
    )
    await sign_off(client, accounts["rad1"], case_id, {finding_id: {"action": "accept"}})

    exports = await _exports(client, accounts["rad1"], case_id)
    assert sorted((e["destination"], e["kind"]) for e in exports) == [
        ("archive", "seg"),
        ("archive", "sr"),
        ("pacs", "seg"),
        ("pacs", "sr"),
    ]
    assert {e["status"] for e in exports} == {"skipped"}
    assert {e["last_error"] for e in exports} == {"no_reidentification_record"}


async def test_a_rejected_segmentation_is_not_sent(app, client, accounts):
    body = await upload(client, accounts["pacs1"], ("brain.nii.gz", four_channel_nifti()))
    [case_id] = body["case_ids"]
    [finding_id] = await _infer(app, case_id, ("volume", FindingKind.SEGMENTATION, {}))
    reject = {"action": "reject", "reason": "motion artefact"}
    await sign_off(client, accounts["rad1"], case_id, {finding_id: reject})

    exports = await _exports(client, accounts["rad1"], case_id)
    assert {(e["status"], e["last_error"]) for e in exports} == {
        ("skipped", "segmentation_rejected")
    }
