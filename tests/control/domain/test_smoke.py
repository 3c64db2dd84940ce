"""End-to-end smoke test of the README walk-through on both databases."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file


async def test_upload_ct_and_mr_then_worklist(client, accounts):
    admin = accounts["admin1"]
    files = [
        ("files", (name, Path(get_testdata_file(name)).read_bytes()))
        for name in ("CT_small.dcm", "MR_small.dcm")
    ]
    response = await client.post("/api/studies", files=files, headers=admin.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["study_ids"]) == 2
    worklist = await client.get("/api/cases", headers=admin.headers)
    assert worklist.status_code == 200
    page = worklist.json()
    assert page["total"] == 2
    assert {item["modality"] for item in page["items"]} == {"CT", "MR"}
    assert {item["id"] for item in page["items"]} == set(body["case_ids"])
    verify = await client.get("/api/audit/verify", headers=admin.headers)
    assert verify.json()["ok"] is True
