"""Round trips with the real ``dicomweb-client`` against a live MedVision server.

STOW (pydicom's test files and generated DX/MR series), QIDO with filters, paging and
``includefield``, WADO of instances, metadata, frames and rendered images.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image

from tests.control.domain.dicomweb.conftest import LiveServer
from tests.control.domain.dicomweb.helpers import chest_dx, mr_series_files, pydicom_file


def _client(server: LiveServer, account: str = "pacs") -> DICOMwebClient:
    return DICOMwebClient(server.dicomweb_url, headers=server.headers(account))


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(BytesIO(data))


def _stored_uids(response: pydicom.Dataset) -> list[tuple[str, str, str]]:
    """(study, series, instance) of each ReferencedSOPSequence item, from its RetrieveURL."""
    uids = []
    for item in response.ReferencedSOPSequence:
        parts = str(item.RetrieveURL).split("/")
        uids.append((parts[-5], parts[-3], parts[-1]))
    return uids


def test_store_search_and_retrieve_round_trip(live_server: LiveServer) -> None:
    client = _client(live_server)
    mr = [_read(data) for data in mr_series_files(4)]
    originals = [_read(pydicom_file("CT_small.dcm")), _read(pydicom_file("MR_small.dcm")), *mr]
    originals.append(_read(chest_dx(96, seed=11)))
    stored = client.store_instances(originals)
    uids = _stored_uids(stored)
    assert len(uids) == len(originals) and "FailedSOPSequence" not in stored
    assert not {uid for _, _, uid in uids} & {str(ds.SOPInstanceUID) for ds in originals}

    studies = client.search_for_studies()
    assert len(studies) == 4  # CT_small, MR_small, the MR series, the DX
    mr_studies = client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    assert len(mr_studies) == 2
    page = client.search_for_studies(limit=2, offset=2)
    assert len(page) == 2
    assert {s["0020000D"]["Value"][0] for s in page} < {s["0020000D"]["Value"][0] for s in studies}

    series_study, series_uid, _ = uids[2]
    series = client.search_for_series(series_study)
    assert [s["0020000E"]["Value"][0] for s in series] == [series_uid]
    instances = client.search_for_instances(
        series_study, series_uid, fields=["ImagePositionPatient", "00280030"]
    )
    assert len(instances) == 4
    assert all("00200032" in item and "00280030" in item for item in instances)

    for original, (study, series_of, instance_uid) in zip(originals, uids, strict=True):
        retrieved = client.retrieve_instance(study, series_of, instance_uid)
        assert str(retrieved.SOPInstanceUID) == instance_uid
        assert str(retrieved.PatientName).startswith("ANON-")
        np.testing.assert_array_equal(retrieved.pixel_array, original.pixel_array)

    metadata = client.retrieve_study_metadata(series_study)
    assert len(metadata) == 4 and all("7FE00010" not in item for item in metadata)
    assert len(client.retrieve_study(series_study)) == 4
    assert len(client.retrieve_series(series_study, series_uid)) == 4


def test_frames_and_rendered(live_server: LiveServer) -> None:
    client = _client(live_server)
    dx = _read(chest_dx(128, seed=12))
    ((study, series, instance),) = _stored_uids(client.store_instances([dx]))
    (frame,) = client.retrieve_instance_frames(study, series, instance, frame_numbers=[1])
    assert frame == np.ascontiguousarray(dx.pixel_array).astype("<u2").tobytes()

    png = client.retrieve_instance_rendered(
        study, series, instance, media_types=("image/png",), params={"window": "2048,4096,linear"}
    )
    image = Image.open(BytesIO(png))
    assert image.format == "PNG" and image.size == (128, 128)
    jpeg = client.retrieve_instance_frames_rendered(study, series, instance, frame_numbers=[1])
    assert Image.open(BytesIO(jpeg)).format == "JPEG"


def test_stow_of_a_corrupt_part_is_reported_per_instance(live_server: LiveServer) -> None:
    client = _client(live_server)
    good = _read(chest_dx(64, seed=13))
    # A part that is not DICOM at all, sent raw (the client only sends datasets).
    boundary = "b0undary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
            for part in (chest_dx(64, seed=14), b"garbage")
        )
        + f"--{boundary}--\r\n".encode()
    )
    response = requests.post(
        f"{live_server.dicomweb_url}/studies",
        data=body,
        headers={
            **live_server.headers("pacs"),
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
        timeout=60,
    )
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/dicom+json"
    result = pydicom.Dataset.from_json(response.json())
    assert len(result.ReferencedSOPSequence) == 1
    assert [item.FailureReason for item in result.FailedSOPSequence] == [0xC000]
    assert client.store_instances([good]).ReferencedSOPSequence


def test_radiologist_may_read_but_not_store(live_server: LiveServer) -> None:
    _client(live_server).store_instances([_read(chest_dx(64, seed=15))])
    reader = _client(live_server, "reader")
    assert len(reader.search_for_studies()) == 1
    with pytest.raises(requests.HTTPError) as refused:
        reader.store_instances([_read(chest_dx(64, seed=16))])
    assert refused.value.response.status_code == 403
    assert refused.value.response.json()["code"] == "permission_denied"
