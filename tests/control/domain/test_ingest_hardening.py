"""Ingest hardening (issue #11): what real-world DICOM got through, each closed by a test.

Item 8: original UIDs that pydicom finds invalid (leading-zero components, common from older
devices) must not reach any log or stderr, through the API or ``medvision ingest``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pydicom.config
import pytest

from tests.control.domain.test_studies import dicom_bytes, load_testdata, upload

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
