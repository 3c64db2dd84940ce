"""Ingest hardening (issue #11): what real-world DICOM got through, each closed by a test.

Item 8: original UIDs that pydicom finds invalid (leading-zero components, common from older
devices) must not reach any log or stderr, through the API or ``medvision ingest``.
Item 9 (in part): every upload error, 409 included, names the offending file.
Item 10: an upload cannot change a study's demographics, and reveals nothing of a case the
caller may not see.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pydicom.config
import pytest
from sqlalchemy import select, update

from control.db.models import Case, Study
from control.domain.studies import service
from tests.control.domain.test_studies import (
    TEST_UID_ROOT,
    assert_error,
    assert_nothing_stored,
    audit_actions,
    ct_variant,
    dicom_bytes,
    instances,
    load_testdata,
    read_testdata,
    row_counts,
    upload,
)

#: Original UIDs with leading-zero components: invalid for VR UI, quoted by pydicom.
ODD_UIDS = {
    "StudyInstanceUID": "1.2.826.0.1.3680043.2.04.777001",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.2.04.777002",
    "SOPInstanceUID": "1.2.826.0.1.3680043.2.04.777003",
}


def odd_uid_ct() -> bytes:
    """CT_small.dcm carrying :data:`ODD_UIDS` (written without pydicom's value checks)."""
    mode = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        ds = load_testdata("CT_small.dcm")
        for keyword, value in ODD_UIDS.items():
            setattr(ds, keyword, value)
        ds.file_meta.MediaStorageSOPInstanceUID = ODD_UIDS["SOPInstanceUID"]
        return dicom_bytes(ds)
    finally:
        pydicom.config.settings.writing_validation_mode = mode


def _leaks(text: str) -> list[str]:
    return [uid for uid in ODD_UIDS.values() if uid in text]


async def test_invalid_original_uids_never_reach_the_log(app, client, accounts, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    response = await upload(client, accounts["pacs1"].headers, ("odd.dcm", odd_uid_ct()))
    assert response.status_code == 201, response.text
    out, err = capfd.readouterr()
    logged = caplog.text + "\n".join(str(r.msg) for r in caplog.records)
    assert _leaks(out + err + logged) == []
    # The bounded, PHI-free summary says where and what.
    assert "dicom_invalid_values" in err + logged
    assert "(0008,0018) UI: invalid value" in err + logged


def test_medvision_ingest_keeps_invalid_original_uids_out_of_its_output(tmp_path: Path):
    source = tmp_path / "in" / "odd.dcm"
    source.parent.mkdir()
    source.write_bytes(odd_uid_ct())
    env = {
        **os.environ,
        "MEDVISION_DATA_DIR": str(tmp_path / "var"),
        "MEDVISION_SECRET_KEY": "c" * 40,
        "PYTHONWARNINGS": "default",
    }
    result = subprocess.run(
        [sys.executable, "-m", "control.cli.main", "ingest", str(source)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "1 new instances" in result.stdout
    assert _leaks(result.stdout + result.stderr) == []


@pytest.mark.parametrize(
    ("message", "summary"),
    [
        ("Invalid value for VR UI: '1.2.04.5'.", "Invalid value for VR UI"),
        ("Value 'DOE^JOHN' is too long", "Value <value> is too long"),
    ],
)
def test_pydicom_messages_are_summarised_without_values(message, summary):
    from control.dicom.quiet import summarise

    assert summarise(message) == summary


@pytest.mark.parametrize(
    ("vr", "text", "invalid"),
    [
        ("DS", "0.14", False),
        ("DS", "-1.5E+02", False),
        ("DS", "1.234567890123456789", True),  # longer than 16 characters
        ("IS", "42", False),
        ("IS", "+0012345678901", True),  # longer than 12 characters
    ],
)
def test_numbers_are_checked_by_the_text_they_were_read_from(vr, text, invalid):
    """DS and IS values are numbers once read; a valid text is not reported as invalid."""
    from pydicom.dataelem import DataElement

    from control.dicom.quiet import invalid_value

    reported = invalid_value(DataElement(0x00280030, vr, text))
    assert (reported is not None) == invalid


async def test_instance_conflict_names_the_offending_file(app, client, accounts):
    headers = accounts["pacs1"].headers
    stored = await upload(client, headers, ("ct.dcm", read_testdata("CT_small.dcm")))
    assert stored.status_code == 201, stored.text
    changed = load_testdata("CT_small.dcm")
    changed.SliceLocation = 123

    response = await upload(client, headers, ("changed.dcm", dicom_bytes(changed)))

    body = assert_error(response, 409, "instance_conflict")
    assert body["detail"]["filename"] == "changed.dcm"


async def test_look_ups_in_several_chunks_find_everything_stored(
    app, client, accounts, monkeypatch
):
    """With two UIDs per look-up query, a request of three studies (five instances) is looked
    up in several chunks: re-sending it with a sixth instance stores only that one, and a
    changed copy of a stored instance, wherever its chunk, still conflicts."""
    monkeypatch.setattr(service, "_IN_CHUNK", 2)
    headers = accounts["pacs1"].headers

    def variant(number: int, **attributes: object) -> tuple[str, bytes]:
        study = number % 3
        return f"ct-{number}.dcm", ct_variant(
            number,
            StudyInstanceUID=f"{TEST_UID_ROOT}.90{study}",
            SeriesInstanceUID=f"{TEST_UID_ROOT}.80{study}",
            **attributes,
        )

    files = [variant(number) for number in range(1, 6)]
    first = await upload(client, headers, *files)
    assert first.status_code == 201, first.text
    assert sorted(study["new_instances"] for study in first.json()["studies"]) == [1, 2, 2]
    counts = await row_counts(app)

    again = await upload(client, headers, *files, variant(6))
    assert again.status_code == 201, again.text
    studies = again.json()["studies"]
    assert not any(study["created"] for study in studies)
    assert sum(study["new_instances"] for study in studies) == 1
    assert sum(study["existing_instances"] for study in studies) == 5
    after = await row_counts(app)
    assert after["instances"] == counts["instances"] + 1
    assert (after["studies"], after["series"], after["cases"]) == (3, 3, 3)

    changed = await upload(client, headers, *files[:4], variant(5, SliceLocation=123))
    body = assert_error(changed, 409, "instance_conflict")
    assert body["detail"]["filename"] == "ct-5.dcm"


async def _race(app) -> str | None:
    async with app.state.session_factory() as session:
        return await session.scalar(select(Study.race_ethnicity))


async def test_radiologist_cannot_set_race_ethnicity_by_upload(app, client, accounts):
    response = await upload(
        client,
        accounts["rad1"].headers,
        ("ct.dcm", read_testdata("CT_small.dcm")),
        data={"race_ethnicity": "Asian"},
    )
    assert_error(response, 403, "permission_denied")
    await assert_nothing_stored(app)


async def test_reupload_does_not_change_race_ethnicity(app, client, accounts):
    headers = accounts["pacs1"].headers
    first = await upload(
        client, headers, ("a.dcm", ct_variant(instance_number=1)), data={"race_ethnicity": "A"}
    )
    assert first.status_code == 201, first.text
    second = await upload(
        client, headers, ("b.dcm", ct_variant(instance_number=2)), data={"race_ethnicity": "B"}
    )
    assert second.status_code == 201, second.text
    assert await _race(app) == "A"
    # The guarded, audited route still can.
    study_id = first.json()["study_ids"][0]
    patched = await client.patch(
        f"/api/studies/{study_id}/demographics", json={"race_ethnicity": "B"}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert await _race(app) == "B"
    assert len(await audit_actions(app, "study.demographics_updated")) == 1


async def test_upload_to_another_radiologists_case_reveals_nothing(app, client, accounts):
    first = await upload(client, accounts["pacs1"].headers, ("a.dcm", ct_variant(1)))
    assert first.status_code == 201, first.text
    case_id = first.json()["case_ids"][0]
    async with app.state.session_factory() as session:
        await session.execute(update(Case).values(assignee_id=uuid.UUID(accounts["rad2"].id)))
        await session.commit()
    counts = await row_counts(app)

    response = await upload(client, accounts["rad1"].headers, ("b.dcm", ct_variant(2)))

    body = assert_error(response, 403, "case_not_visible")
    assert body["detail"]["filename"] == "b.dcm"
    assert case_id not in response.text
    assert await row_counts(app) == counts
    # Their own (or pool) cases still take new images from them.
    own = await upload(client, accounts["rad2"].headers, ("c.dcm", ct_variant(3)))
    assert own.status_code == 201, own.text


@pytest.mark.parametrize(
    ("first", "second"),
    [("MR_small.dcm", "MR_small_RLE.dcm"), ("MR_small_RLE.dcm", "MR_small.dcm")],
)
async def test_resent_instance_in_another_transfer_syntax_is_the_same_instance(
    app, client, accounts, first, second
):
    headers = accounts["pacs1"].headers
    stored = await upload(client, headers, (first, read_testdata(first)))
    assert stored.status_code == 201, stored.text
    kept = [(i.object_key, i.sha256) for i in await instances(app)]

    again = await upload(client, headers, (second, read_testdata(second)))

    assert again.status_code == 200, again.text
    assert again.json()["studies"][0]["existing_instances"] == 1
    assert [(i.object_key, i.sha256) for i in await instances(app)] == kept  # first copy kept
    events = await audit_actions(app, "instance.resent_reencoded")
    assert len(events) == 1
    details = events[0].details
    assert (json.loads(details) if isinstance(details, str) else details)["count"] == 1


async def test_resent_instance_with_other_pixels_still_conflicts(app, client, accounts):
    headers = accounts["pacs1"].headers
    assert (
        await upload(client, headers, ("mr.dcm", read_testdata("MR_small.dcm")))
    ).status_code == 201
    changed = load_testdata("MR_small_RLE.dcm")
    changed.decompress(generate_instance_uid=False)
    pixels = changed.pixel_array.copy()
    pixels[0, 0] += 1
    changed.PixelData = pixels.tobytes()

    response = await upload(client, headers, ("other.dcm", dicom_bytes(changed)))

    body = assert_error(response, 409, "instance_conflict")
    assert body["detail"]["filename"] == "other.dcm"


async def _sign_off_all(app) -> None:
    from control.db.models import CaseStatus

    async with app.state.session_factory() as session:
        await session.execute(update(Case).values(status=CaseStatus.SIGNED_OFF))
        await session.commit()


async def test_new_images_of_a_signed_off_case_open_a_linked_addendum(app, client, accounts):
    headers, admin = accounts["pacs1"].headers, accounts["admin1"].headers
    first = await upload(client, headers, ("a.dcm", ct_variant(1)))
    signed_id = first.json()["case_ids"][0]
    await _sign_off_all(app)

    later = await upload(client, headers, ("b.dcm", ct_variant(2)))

    assert later.status_code == 201, later.text
    study = later.json()["studies"][0]
    addendum_id = study["case_id"]
    assert addendum_id != signed_id
    assert study["status"] != "signed_off" and "addendum" in study["flags"]
    addendum = (await client.get(f"/api/cases/{addendum_id}", headers=admin)).json()
    assert addendum["addendum_of"] == signed_id
    assert addendum["study"]["id"] == first.json()["studies"][0]["study_id"]
    signed = (await client.get(f"/api/cases/{signed_id}", headers=admin)).json()
    assert signed["status"] == "signed_off"  # the signed report is final and stays so
    assert signed["addendum_of"] is None
    assert "images_after_sign_off" in signed["flags"]
    events = await audit_actions(app, "case.addendum_opened")
    assert [event.target_id for event in events] == [addendum_id]
    details = events[0].details
    details = json.loads(details) if isinstance(details, str) else details
    assert details["addendum_of"] == signed_id

    # More images while the addendum is open join it; a re-send changes nothing.
    third = await upload(client, headers, ("c.dcm", ct_variant(3)))
    again = await upload(client, headers, ("b.dcm", ct_variant(2)))
    assert third.json()["studies"][0]["case_id"] == addendum_id
    assert again.json()["studies"][0]["case_id"] == addendum_id
    assert again.json()["studies"][0]["new_instances"] == 0
    async with app.state.session_factory() as session:
        assert len((await session.scalars(select(Case))).all()) == 2


async def test_racing_uploads_after_sign_off_open_one_addendum(app, client, accounts):
    headers = accounts["pacs1"].headers
    assert (await upload(client, headers, ("a.dcm", ct_variant(1)))).status_code == 201
    await _sign_off_all(app)

    responses = await asyncio.gather(
        *(upload(client, headers, (f"n{i}.dcm", ct_variant(10 + i))) for i in range(4))
    )

    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    case_ids = {r.json()["studies"][0]["case_id"] for r in responses}
    assert len(case_ids) == 1
    async with app.state.session_factory() as session:
        cases = (await session.scalars(select(Case))).all()
    assert len(cases) == 2
    assert len(await audit_actions(app, "case.addendum_opened")) == 1
