"""The shared Orthanc fixture: loopback only, C-STORE in, REST and DICOMweb answers."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.fixtures.orthanc import start_orthanc


def _listening_sockets(port: int) -> list[str]:
    output = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in output.splitlines() if line.split()[3].endswith(f":{port}")]


def test_orthanc_listens_on_loopback_only_and_stores_what_storescu_sends(tmp_path: Path) -> None:
    """Both of Orthanc's ports are bound to loopback; an instance sent with DCMTK storescu
    is found by its Study Instance UID through the REST API and through DICOMweb QIDO-RS."""
    storescu = "/usr/bin/storescu"
    if not Path(storescu).exists():
        pytest.skip("DCMTK (Debian package dcmtk) is not installed: no storescu")
    path = get_testdata_file("CT_small.dcm")
    study_uid = str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    with start_orthanc(tmp_path / "orthanc") as pacs:
        for port in (pacs.dicom_port, pacs.http_port):
            addresses = _listening_sockets(port)
            assert addresses, f"nothing listens on {port}"
            assert all(a.startswith(("127.0.0.1:", "[::1]:")) for a in addresses), addresses
        subprocess.run(
            [
                storescu,
                "-aet",
                "TESTSCU",
                "-aec",
                pacs.aet,
                "127.0.0.1",
                str(pacs.dicom_port),
                path,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert pacs.study_instance_uids() == [study_uid]
        instances = pacs.instances_of_study(study_uid)
        assert len(instances) == 1
        with urllib.request.urlopen(f"{pacs.dicomweb_url}/studies", timeout=30) as response:
            assert study_uid.encode() in response.read()
