"""The listener's pieces in process: status mapping, Part-10 rebuild, settings validation,
and the start-up replay of a spool a crashed listener left (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from sqlalchemy import func, select

from control.config import Settings
from control.db.engine import create_engine, create_session_factory
from control.db.migrate import upgrade
from control.db.models import AuditEntry, Instance
from control.dicom.listener import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    DicomListener,
    accepted_transfer_syntaxes,
    error_comment,
    part10_bytes,
    status_for,
)
from control.errors import MedVisionError
from control.storage import build_store
from tests.fixtures.dx import chest_dx

STATUS_CASES = [
    ("not_dicom", CANNOT_UNDERSTAND),
    ("truncated_dicom", CANNOT_UNDERSTAND),
    ("pixel_decode_failed", CANNOT_UNDERSTAND),
    ("unsupported_transfer_syntax", CANNOT_UNDERSTAND),
    ("image_too_large", OUT_OF_RESOURCES),
    ("file_too_large", OUT_OF_RESOURCES),
    ("missing_attribute", DATASET_MISMATCH),
    ("invalid_attribute", DATASET_MISMATCH),
    ("no_pixel_data", DATASET_MISMATCH),
    ("unsupported_sop_class", DATASET_MISMATCH),
]


@pytest.mark.parametrize(("code", "status"), STATUS_CASES)
def test_status_for_error_code(code: str, status: int) -> None:
    assert status_for(MedVisionError("x", code=code)) == status


def test_error_comment_names_the_code_only_within_64_characters() -> None:
    error = MedVisionError("Doe^Jane 1.2.3.4 is broken", code="missing_attribute" + "x" * 80)
    comment = error_comment(error)
    assert len(comment) == 64
    assert "Doe" not in comment and "1.2.3" not in comment


def test_part10_rebuild_round_trips() -> None:
    original = dcmread(BytesIO(chest_dx(32)))
    body = BytesIO()
    original.save_as(body, enforce_file_format=True)
    raw = body.getvalue()
    dataset_bytes = raw[raw.index(b"DICM") + 4 :]
    meta_length = 12 + int.from_bytes(dataset_bytes[8:12], "little")
    rebuilt = dcmread(BytesIO(part10_bytes(original.file_meta, dataset_bytes[meta_length:])))
    assert rebuilt.SOPInstanceUID == original.SOPInstanceUID
    assert rebuilt.PixelData == original.PixelData


def test_accepted_transfer_syntaxes_cover_the_compressed_ones() -> None:
    accepted = accepted_transfer_syntaxes()
    for syntax in (JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless):
        assert syntax in accepted


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEDVISION_DICOM_AE_TITLE": "A" * 17}, "at most 16 characters"),
        ({"MEDVISION_DICOM_AE_TITLE": "MED\\VISION"}, "without a backslash"),
        ({"MEDVISION_DICOM_ALLOWED_AES": '{"ORTHANC": " "}'}, "empty username"),
        ({"MEDVISION_DICOM_ALLOWED_AES": "not json"}, "dicom_allowed_aes"),
        ({"MEDVISION_DICOM_PORT": "70000"}, "dicom_port"),
        ({"MEDVISION_DICOM_MAX_PDU": "100"}, "dicom_max_pdu"),
        ({"MEDVISION_DICOM_MAX_ASSOCIATIONS": "0"}, "dicom_max_associations"),
    ],
)
def test_dicom_settings_are_validated(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Settings()


def test_allowed_aes_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVISION_DICOM_ALLOWED_AES", '{" ORTHANC ": "pacs-bridge"}')
    assert Settings().dicom_allowed_aes == {"ORTHANC": "pacs-bridge"}


async def test_spool_left_by_a_crash_is_ingested_at_start(settings: Settings) -> None:
    """Instances a listener answered success for and spooled, but had not stored before it
    died, are stored when the next listener starts, audited, and the spool removed."""
    upgrade(settings)
    spool = settings.data_dir / "dicom-spool" / "0123abcd"
    spool.mkdir(parents=True)
    meta = {"calling_ae": "ORTHANC", "username": "pacs-bridge", "role": "integration"}
    (spool / "association.json").write_text(json.dumps(meta))
    study = generate_uid()
    for number in range(2):
        (spool / f"{number:08d}.dcm").write_bytes(chest_dx(32, seed=number, study_uid=study))
    (spool / "00000002.part").write_bytes(b"half written")
    engine = create_engine(settings)
    try:
        listener = DicomListener(settings, create_session_factory(engine), build_store(settings))
        await listener.replay_spools()
        async with create_session_factory(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(Instance)) == 2
            entry = await session.scalar(
                select(AuditEntry).where(AuditEntry.action == "dicom.spool_replayed")
            )
    finally:
        await engine.dispose()
    assert entry is not None
    assert entry.actor == "pacs-bridge"
    details = json.loads(entry.details)
    assert (details["calling_ae"], details["stored_new"]) == ("ORTHANC", 2)
    assert study not in entry.details
    assert not spool.exists()
