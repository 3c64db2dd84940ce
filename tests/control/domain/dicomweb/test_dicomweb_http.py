"""DICOMweb over raw HTTP (in-process, SQLite and PostgreSQL): status codes, headers, roles."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from control.observability.metrics import INGEST_INSTANCES
from tests.control.domain.dicomweb.helpers import (
    FAILED_SOP_SEQUENCE,
    FAILURE_REASON,
    REFERENCED_SOP_INSTANCE_UID,
    REFERENCED_SOP_SEQUENCE,
    RETRIEVE_URL,
    STOW_TYPE,
    chest_dx,
    dicom_json,
    mr_series_files,
    multipart,
    pydicom_file,
    split_multipart,
    values,
)
from tests.fixtures.uploads import dicom_bytes

DICOM_PARTS = 'multipart/related; type="application/dicom"'


async def _stow(client, account, parts: list[bytes], path: str = "/dicomweb/studies"):
    return await client.post(
        path,
        content=multipart(parts),
        headers={**account.headers, "Content-Type": STOW_TYPE, "Accept": "application/dicom+json"},
    )


async def test_stow_stores_all_and_answers_200_with_pseudonymous_uids(client, accounts) -> None:
    original = pydicom.dcmread(BytesIO(pydicom_file("CT_small.dcm")))
    response = await _stow(client, accounts["pacs1"], [pydicom_file("CT_small.dcm")])
    assert response.status_code == 200, response.text
    body = dicom_json(response)
    (item,) = values(body, REFERENCED_SOP_SEQUENCE)
    stored_uid = values(item, REFERENCED_SOP_INSTANCE_UID)[0]
    assert stored_uid != original.SOPInstanceUID and stored_uid.startswith("2.25.")
    assert FAILED_SOP_SEQUENCE not in body
    study_url = values(body, RETRIEVE_URL)[0]
    assert "/dicomweb/studies/2.25." in study_url
    assert values(item, RETRIEVE_URL)[0].startswith(study_url + "/series/")
    # Counted as arriving through STOW-RS (not as an HTTP upload) in the ingest metrics.
    stow = INGEST_INSTANCES.labels("stow", "CT", "stored")._value.get()
    assert stow >= 1


async def test_stow_mixed_batch_202_and_all_failed_409(client, accounts) -> None:
    good = chest_dx(64, seed=1)
    corrupt = chest_dx(64, seed=5)[:-3000]  # pixel data cut short
    response = await _stow(client, accounts["pacs1"], [good, b"not dicom at all", corrupt])
    assert response.status_code == 202, response.text
    body = dicom_json(response)
    assert len(values(body, REFERENCED_SOP_SEQUENCE)) == 1
    failed = values(body, FAILED_SOP_SEQUENCE)
    assert len(failed) == 2
    assert {values(item, FAILURE_REASON)[0] for item in failed} <= {0xC000, 0xA900, 0x0110}
    # The corrupt part still names the SOP Instance UID its header carried.
    original_uid = pydicom.dcmread(BytesIO(corrupt), stop_before_pixels=True).SOPInstanceUID
    assert [original_uid] in [values(item, REFERENCED_SOP_INSTANCE_UID) for item in failed]

    response = await _stow(client, accounts["pacs1"], [b"nope", b"still nope"])
    assert response.status_code == 409
    body = dicom_json(response)
    assert [values(i, FAILURE_REASON) for i in values(body, FAILED_SOP_SEQUENCE)] == [
        [0xC000],
        [0xC000],
    ]


async def test_stow_into_a_study_rejects_instances_of_another_study(client, accounts) -> None:
    first = chest_dx(64, seed=2)
    study_uid = pydicom.dcmread(BytesIO(first)).StudyInstanceUID
    other = chest_dx(64, seed=3)
    response = await _stow(
        client, accounts["admin1"], [first, other], f"/dicomweb/studies/{study_uid}"
    )
    assert response.status_code == 202, response.text
    body = dicom_json(response)
    (failed,) = values(body, FAILED_SOP_SEQUENCE)
    assert values(failed, FAILURE_REASON) == [0xA900]
    # The stored pseudonym of the study works as the target too.
    stored_study = values(body, RETRIEVE_URL)[0].rsplit("/", 1)[1]
    more = chest_dx(64, seed=4, study_uid=study_uid)
    response = await _stow(client, accounts["admin1"], [more], f"/dicomweb/studies/{stored_study}")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        ("application/dicom", 415, "unsupported_media_type"),
        (
            'multipart/related; type="application/dicom+json"; boundary=x',
            415,
            "unsupported_media_type",
        ),
        ("multipart/form-data; boundary=x", 415, "unsupported_media_type"),
        ('multipart/related; type="application/dicom"', 400, "multipart_boundary_missing"),
    ],
)
async def test_stow_refuses_other_bodies(client, accounts, content_type, status, code) -> None:
    response = await client.post(
        "/dicomweb/studies",
        content=multipart([b"x"]),
        headers={**accounts["pacs1"].headers, "Content-Type": content_type},
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


async def test_stow_hostile_multipart(client, accounts, app) -> None:
    headers = {**accounts["pacs1"].headers, "Content-Type": STOW_TYPE}
    no_parts = await client.post(
        "/dicomweb/studies", content=b"--test-boundary-1234--\r\n", headers=headers
    )
    assert (no_parts.status_code, no_parts.json()["code"]) == (400, "no_parts")
    unterminated = await client.post(
        "/dicomweb/studies", content=multipart([b"abc"])[:-10], headers=headers
    )
    assert (unterminated.status_code, unterminated.json()["code"]) == (400, "malformed_multipart")
    # Its first part is complete (and prepared while the rest arrives), the body is not.
    cut_after_a_good_part = await client.post(
        "/dicomweb/studies",
        content=multipart([pydicom_file("CT_small.dcm"), b"abc"])[:-10],
        headers=headers,
    )
    assert cut_after_a_good_part.json()["code"] == "malformed_multipart"
    nothing = await client.get("/dicomweb/studies", headers=accounts["pacs1"].headers)
    assert nothing.status_code == 204, nothing.text
    app.state.settings.max_file_bytes = 4096
    huge = await client.post(
        "/dicomweb/studies", content=multipart([b"x" * 10_000]), headers=headers
    )
    assert (huge.status_code, huge.json()["code"]) == (413, "part_too_large")


async def test_stow_roles(client, accounts) -> None:
    for username, status in (("rad1", 403), ("mlops1", 403)):
        response = await _stow(client, accounts[username], [chest_dx(64)])
        assert response.status_code == status
        assert response.json()["code"] == "permission_denied"
    response = await client.post(
        "/dicomweb/studies", content=b"", headers={"Content-Type": STOW_TYPE}
    )
    assert response.status_code == 401


async def _stored_series(client, accounts) -> tuple[str, str, list[str]]:
    files = mr_series_files(3)
    response = await _stow(client, accounts["pacs1"], files)
    assert response.status_code == 200, response.text
    urls = [
        values(item, RETRIEVE_URL)[0]
        for item in values(dicom_json(response), REFERENCED_SOP_SEQUENCE)
    ]
    parts = urls[0].split("/")
    return parts[-5], parts[-3], [url.rsplit("/", 1)[1] for url in urls]


async def test_qido_search_filters_paging_and_includefield(client, accounts) -> None:
    study, series, instances = await _stored_series(client, accounts)
    await _stow(client, accounts["pacs1"], [chest_dx(64, seed=7)])
    headers = accounts["pacs1"].headers
    everything = dicom_json(await client.get("/dicomweb/studies", headers=headers))
    assert len(everything) == 2
    mr = dicom_json(await client.get("/dicomweb/studies?ModalitiesInStudy=MR", headers=headers))
    assert [values(d, "0020000D") for d in mr] == [[study]]
    assert values(mr[0], "00201208") == [3] and values(mr[0], "00201206") == [1]
    assert mr[0]["00100010"]["Value"][0]["Alphabetic"].startswith("ANON-")
    assert "Value" not in mr[0]["00080050"]  # AccessionNumber: emptied by de-identification
    by_tag = dicom_json(await client.get(f"/dicomweb/studies?0020000D={study}", headers=headers))
    assert len(by_tag) == 1
    none = await client.get("/dicomweb/studies?AccessionNumber=ACC123", headers=headers)
    assert none.status_code == 204 and none.content == b""
    page = dicom_json(await client.get("/dicomweb/studies?limit=1&offset=1", headers=headers))
    assert len(page) == 1
    date = values(mr[0], "00080020")[0]
    for query in (date, f"{date}-", f"-{date}", f"{date}-{date}"):
        found = dicom_json(
            await client.get(
                f"/dicomweb/studies?StudyDate={query}&ModalitiesInStudy=MR", headers=headers
            )
        )
        assert len(found) == 1, query
    assert (
        await client.get("/dicomweb/studies?StudyDate=-19000101", headers=headers)
    ).status_code == 204

    series_list = dicom_json(await client.get(f"/dicomweb/studies/{study}/series", headers=headers))
    assert [values(s, "0020000E") for s in series_list] == [[series]]
    assert values(series_list[0], "00200011") == [1]  # SeriesNumber from the stored header
    listed = dicom_json(
        await client.get(
            f"/dicomweb/studies/{study}/series/{series}/instances?includefield=00280030&includefield=ImagePositionPatient",
            headers=headers,
        )
    )
    assert sorted(values(i, "00080018")[0] for i in listed) == sorted(instances)
    assert all("00280030" in i and "00200032" in i and "00200013" in i for i in listed)
    one = dicom_json(
        await client.get(
            f"/dicomweb/studies/{study}/instances?SOPInstanceUID={instances[1]}", headers=headers
        )
    )
    assert [values(i, "00080018") for i in one] == [[instances[1]]]
    everything = dicom_json(
        await client.get(f"/dicomweb/studies/{study}/instances?includefield=all", headers=headers)
    )
    assert "00280010" in everything[0] and "7FE00010" not in everything[0]
    warned = await client.get("/dicomweb/studies?StudyDescription=x", headers=headers)
    assert "not supported for matching" in warned.headers["warning"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=0", "invalid_limit"),
        ("limit=abc", "invalid_limit"),
        ("limit=100000", "invalid_limit"),
        ("offset=-1", "invalid_offset"),
        ("StudyDate=2020-13-01", "invalid_date_range"),
        ("StudyDate=-", "invalid_date_range"),
        ("NotAKeyword=1", "unknown_attribute"),
        ("includefield=Bogus", "unknown_attribute"),
        ("fuzzymatching=maybe", "invalid_fuzzymatching"),
    ],
)
async def test_qido_bad_queries_answer_400(client, accounts, query, code) -> None:
    response = await client.get(f"/dicomweb/studies?{query}", headers=accounts["admin1"].headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


async def test_wado_instances_metadata_frames_rendered(client, accounts) -> None:
    study, series, instances = await _stored_series(client, accounts)
    headers = accounts["pacs1"].headers
    base = f"/dicomweb/studies/{study}/series/{series}/instances/{instances[0]}"
    response = await client.get(base, headers=headers)
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    (part,) = split_multipart(content_type, response.content)
    stored = pydicom.dcmread(BytesIO(part))
    assert stored.SOPInstanceUID == instances[0]
    whole = await client.get(f"/dicomweb/studies/{study}", headers=headers)
    assert len(split_multipart(whole.headers["content-type"], whole.content)) == 3
    explicit = await client.get(
        base,
        headers={
            **headers,
            "Accept": f"{DICOM_PARTS}; transfer-syntax=1.2.840.10008.1.2.1",
        },
    )
    assert explicit.status_code == 200
    jpeg_only = await client.get(
        base,
        headers={
            **headers,
            "Accept": f"{DICOM_PARTS}; transfer-syntax=1.2.840.10008.1.2.4.50",
        },
    )
    assert (jpeg_only.status_code, jpeg_only.json()["code"]) == (406, "not_acceptable")
    metadata = dicom_json(await client.get(f"{base}/metadata", headers=headers))
    assert values(metadata[0], "00080018") == [instances[0]] and "7FE00010" not in metadata[0]
    study_metadata = dicom_json(
        await client.get(f"/dicomweb/studies/{study}/metadata", headers=headers)
    )
    assert len(study_metadata) == 3

    frames = await client.get(f"{base}/frames/1", headers=headers)
    assert frames.headers["content-type"].startswith(
        'multipart/related; type="application/octet-stream"'
    )
    (pixels,) = split_multipart(frames.headers["content-type"], frames.content)
    assert pixels == np.ascontiguousarray(stored.pixel_array).astype("<u2").tobytes()
    assert (await client.get(f"{base}/frames/2", headers=headers)).json()[
        "code"
    ] == "frame_not_found"
    assert (await client.get(f"{base}/frames/x", headers=headers)).json()[
        "code"
    ] == "invalid_frame_list"

    png = await client.get(
        f"{base}/rendered?window=500,1000,linear&viewport=32,32",
        headers={**headers, "Accept": "image/png"},
    )
    assert png.headers["content-type"] == "image/png"
    assert Image.open(BytesIO(png.content)).size == (32, 32)
    jpeg = await client.get(f"{base}/frames/1/rendered", headers=headers)
    assert jpeg.headers["content-type"] == "image/jpeg"
    Image.open(BytesIO(jpeg.content)).verify()
    bad = await client.get(f"{base}/rendered?window=1,0", headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_window")
    sigmoid = await client.get(f"{base}/rendered?window=1,2,sigmoid", headers=headers)
    assert sigmoid.json()["code"] == "unsupported_window_function"


async def test_wado_not_found_codes(client, accounts) -> None:
    study, series, _ = await _stored_series(client, accounts)
    headers = accounts["admin1"].headers
    cases = {
        "/dicomweb/studies/1.2.3": "study_not_found",
        f"/dicomweb/studies/{study}/series/1.2.3": "series_not_found",
        f"/dicomweb/studies/{study}/series/{series}/instances/1.2.3": "instance_not_found",
        "/dicomweb/studies/1.2.3/series": "study_not_found",
    }
    for path, code in cases.items():
        response = await client.get(path, headers=headers)
        assert (response.status_code, response.json()["code"]) == (404, code), path


async def test_radiologists_see_only_studies_of_cases_they_may_see(client, accounts, app) -> None:
    from sqlalchemy import update

    from control.db.models import Case

    study, _, _ = await _stored_series(client, accounts)
    rad1, rad2 = accounts["rad1"], accounts["rad2"]
    assert len(dicom_json(await client.get("/dicomweb/studies", headers=rad2.headers))) == 1
    async with app.state.session_factory() as session:
        await session.execute(update(Case).values(assignee_id=__import__("uuid").UUID(rad1.id)))
        await session.commit()
    assert (await client.get("/dicomweb/studies", headers=rad2.headers)).status_code == 204
    response = await client.get(f"/dicomweb/studies/{study}/metadata", headers=rad2.headers)
    assert (response.status_code, response.json()["code"]) == (404, "study_not_found")
    assert len(dicom_json(await client.get("/dicomweb/studies", headers=rad1.headers))) == 1
    assert (
        await client.get("/dicomweb/studies", headers=accounts["mlops1"].headers)
    ).status_code == 403


async def test_attributes_answered_from_the_database_match_the_stored_header(
    client, accounts
) -> None:
    """QIDO answers study attributes from the database, assuming de-identification empties
    AccessionNumber & co and sets PatientName to the pseudonymous id: check it on a file
    that carries all of them."""
    original = pydicom.dcmread(BytesIO(chest_dx(64, seed=21)))
    original.AccessionNumber, original.StudyID, original.StudyTime = "ACC-1", "S-1", "101010"
    original.ReferringPhysicianName = "Doctor^Who"
    response = await _stow(client, accounts["pacs1"], [dicom_bytes(original)])
    (study,) = dicom_json(await client.get("/dicomweb/studies", headers=accounts["pacs1"].headers))
    study_uid = values(study, "0020000D")[0]
    (header,) = dicom_json(
        await client.get(
            f"/dicomweb/studies/{study_uid}/metadata", headers=accounts["pacs1"].headers
        )
    )
    assert response.status_code == 200
    for tag in ("00080050", "00200010", "00080030", "00080090", "00100030", "00100040"):
        assert values(header, tag) == [] and values(study, tag) == [], tag
    for tag in ("00100010", "00100020", "00080020"):
        assert values(header, tag) == values(study, tag), tag


async def test_a_compressed_instance_is_sent_as_stored_or_in_explicit_little_endian(
    client, accounts
) -> None:
    response = await _stow(client, accounts["pacs1"], [pydicom_file("MR_small_RLE.dcm")])
    assert response.status_code == 200, response.text
    (item,) = values(dicom_json(response), REFERENCED_SOP_SEQUENCE)
    url = values(item, RETRIEVE_URL)[0].split("/dicomweb", 1)[1]
    headers = accounts["pacs1"].headers
    as_stored = await client.get(
        f"/dicomweb{url}", headers={**headers, "Accept": f"{DICOM_PARTS}; transfer-syntax=*"}
    )
    (stored,) = split_multipart(as_stored.headers["content-type"], as_stored.content)
    assert pydicom.dcmread(BytesIO(stored)).file_meta.TransferSyntaxUID == RLELossless
    explicit = await client.get(
        f"/dicomweb{url}",
        headers={**headers, "Accept": f"{DICOM_PARTS}; transfer-syntax={ExplicitVRLittleEndian}"},
    )
    assert f"transfer-syntax={ExplicitVRLittleEndian}" in explicit.headers["content-type"]
    (converted,) = split_multipart(explicit.headers["content-type"], explicit.content)
    dataset = pydicom.dcmread(BytesIO(converted))
    assert dataset.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    reference = pydicom.dcmread(BytesIO(pydicom_file("MR_small.dcm")))
    np.testing.assert_array_equal(dataset.pixel_array, reference.pixel_array)


async def test_a_page_cut_by_the_default_limit_says_more_exist(
    client, accounts, monkeypatch
) -> None:
    from control.domain.dicomweb import query

    monkeypatch.setattr(query, "DEFAULT_LIMIT", 1)
    for seed in (41, 42):
        assert (
            await _stow(client, accounts["pacs1"], [chest_dx(64, seed=seed)])
        ).status_code == 200
    headers = accounts["pacs1"].headers
    cut = await client.get("/dicomweb/studies", headers=headers)
    assert len(dicom_json(cut)) == 1
    assert "additional results" in cut.headers["warning"]
    explicit = await client.get("/dicomweb/studies?limit=1", headers=headers)
    assert len(dicom_json(explicit)) == 1 and "warning" not in explicit.headers
