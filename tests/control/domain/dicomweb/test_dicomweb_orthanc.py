"""Orthanc, a real PACS, as a DICOMweb client of MedVision (its DICOMweb plugin's
``/dicom-web/servers/{name}/...`` client API): it pushes a study with STOW-RS, finds the
de-identified study with QIDO-RS and pulls it back with WADO-RS."""

from __future__ import annotations

import json
import urllib.request
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.control.domain.dicomweb.conftest import LiveServer
from tests.control.domain.dicomweb.helpers import mr_series_files
from tests.fixtures.orthanc import Orthanc, start_orthanc


def _call(pacs: Orthanc, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{pacs.url}{path}", data=data, method=method)
    request.add_header(
        "Content-Type", "application/dicom" if raw is not None else "application/json"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_orthanc_stores_finds_and_retrieves_through_dicomweb(
    live_server: LiveServer, tmp_path: Path
) -> None:
    files = mr_series_files(3)
    original_study = pydicom.dcmread(BytesIO(files[0]), stop_before_pixels=True).StudyInstanceUID
    with start_orthanc(tmp_path / "orthanc") as pacs:
        orthanc_ids = [_call(pacs, "POST", "/instances", raw=data)["ParentStudy"] for data in files]
        _call(
            pacs,
            "PUT",
            "/dicom-web/servers/medvision",
            {
                "Url": f"{live_server.dicomweb_url}/",
                "HttpHeaders": {"Authorization": f"Bearer {live_server.tokens['pacs']}"},
            },
        )
        _call(pacs, "POST", "/dicom-web/servers/medvision/stow", {"Resources": [orthanc_ids[0]]})

        found = _call(
            pacs,
            "POST",
            "/dicom-web/servers/medvision/qido",
            {"Uri": "/studies", "Arguments": {"ModalitiesInStudy": "MR"}},
        )
        # Orthanc answers in its own flavour of DICOM JSON: one "Value" per tag, not a list.
        (study,) = found
        pseudonym = study["0020000D"]["Value"]
        assert pseudonym.startswith("2.25.") and pseudonym != original_study
        assert study["00100010"]["Value"].startswith("ANON-")

        _call(
            pacs,
            "POST",
            "/dicom-web/servers/medvision/retrieve",
            {"Resources": [{"Study": pseudonym}]},
        )
        assert pseudonym in pacs.study_instance_uids()
        retrieved = pacs.instances_of_study(pseudonym)
        assert len(retrieved) == 3
        header = pydicom.dcmread(BytesIO(pacs.instance_file(retrieved[0]["ID"])))
        assert str(header.PatientName).startswith("ANON-")
