"""Study upload through the API: happy paths, de-identified storage, grouping, links, S3.

Every test runs on SQLite and on PostgreSQL (the ``database_url`` fixture). Helpers at the top
are shared with ``test_studies_bad_input.py`` and ``test_phi.py``.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pydicom.data import get_testdata_file
from sqlalchemy import event, func, select

from control.app import create_app
from control.config import Settings
from control.db.models import AuditEntry, Case, Instance, Series, Study, StudyLink
from control.storage import FilesystemStore
from tests.fixtures.mr_series import brats_phantom_study
from tests.fixtures.s3server import S3Server
from tests.fixtures.uploads import series_files

UPLOAD_URL = "/api/studies"
ROW_MODELS = (Study, Series, Instance, Case, StudyLink)
ACCEPTED_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "MR_small_RLE.dcm",
]
#: A UID root for test-made instances, distinct from every real and pseudonymous root.
TEST_UID_ROOT = "1.2.826.0.1.3680043.10.777"

# ---------------------------------------------------------------------------------------------
# Helpers (imported by the other study test modules)
# ---------------------------------------------------------------------------------------------


def read_testdata(name: str) -> bytes:
    """The raw bytes of one of pydicom's test files."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return Path(path).read_bytes()


def load_testdata(name: str) -> pydicom.Dataset:
    """A freshly parsed pydicom test file."""
    return pydicom.dcmread(get_testdata_file(name))


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    """``ds`` written as a DICOM Part 10 file."""
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def ct_variant(instance_number: int | None = None, **attributes: Any) -> bytes:
    """CT_small.dcm with ``attributes`` set and, given ``instance_number``, a new SOP Instance
    UID (same study and series), as file bytes."""
    ds = load_testdata("CT_small.dcm")
    if instance_number is not None:
        ds.SOPInstanceUID = f"{TEST_UID_ROOT}.{instance_number}"
        ds.InstanceNumber = instance_number
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return dicom_bytes(ds)


def as_files(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    """The ``files`` multipart parts for ``(filename, bytes)`` pairs."""
    return [("files", (name, data)) for name, data in named]


async def upload(
    client: AsyncTestClient[Litestar],
    headers: dict[str, str],
    *named: tuple[str, bytes],
    data: dict[str, str] | None = None,
) -> Any:
    """POST ``named`` files (and optional form ``data``) to the upload endpoint."""
    return await client.post(UPLOAD_URL, files=as_files(*named), data=data, headers=headers)


async def row_counts(app: Litestar) -> dict[str, int]:
    """Rows in each study-related table."""
    async with app.state.session_factory() as session:
        return {
            model.__tablename__: int(
                await session.scalar(select(func.count()).select_from(model)) or 0
            )
            for model in ROW_MODELS
        }


async def audit_actions(app: Litestar, action: str | None = None) -> list[AuditEntry]:
    """Audit entries in order, optionally only those of one action."""
    async with app.state.session_factory() as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        return list((await session.scalars(query)).all())


async def instances(app: Litestar) -> list[Instance]:
    """Every stored instance row."""
    async with app.state.session_factory() as session:
        return list((await session.scalars(select(Instance))).all())


async def assert_nothing_stored(app: Litestar) -> None:
    """No study rows, no stored objects and no ``study.ingested`` audit entry."""
    assert await row_counts(app) == {model.__tablename__: 0 for model in ROW_MODELS}
    # (the server's signed audit checkpoints live under audit/ in the same store)
    assert await app.state.store.list_keys("studies/") == []
    if isinstance(app.state.store, FilesystemStore):
        checkpoints = app.state.store.root / "audit"
        leftovers = [
            p
            for p in app.state.store.root.rglob("*")
            if p.is_file() and checkpoints not in p.parents
        ]
        assert leftovers == [], "temporary or stray files left in the object store"
    assert await audit_actions(app, "study.ingested") == []


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a JSON error with ``status`` and (when given) ``code``."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    if code is not None:
        assert body["code"] == code, body
    return body


@asynccontextmanager
async def app_with(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[Litestar, AsyncTestClient[Litestar]]]:
    """A second app on the same database with some settings changed, and its client.

    Accounts made through the default ``app`` fixture stay valid: same database, same keys.
    """
    other = create_app(settings.model_copy(update=overrides))
    async with AsyncTestClient(app=other) as other_client:
        yield other, other_client


def s3_overrides(s3_server: S3Server) -> dict[str, Any]:
    """Settings that point the object store at a fresh bucket on the test S3 server."""
    return {
        "s3_endpoint": s3_server.endpoint,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "s3_region": s3_server.region,
        "s3_bucket": s3_server.unique_bucket(),
    }


def bucket_objects(s3_server: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object in ``bucket`` read raw with the minio client (empty when no bucket),
    except the server's signed audit checkpoints under ``audit/``."""
    raw = s3_server.client()
    if not raw.bucket_exists(bucket):
        return {}
    objects = {}
    for item in raw.list_objects(bucket, recursive=True):
        assert item.object_name is not None
        if item.object_name.startswith("audit/"):
            continue
        response = raw.get_object(bucket, item.object_name)
        try:
            objects[item.object_name] = response.read()
        finally:
            response.close()
            response.release_conn()
    return objects


def nifti_gz(data: np.ndarray) -> bytes:
    """``data`` as a gzip-compressed NIfTI-1 file with 1 mm isotropic voxels."""
    image = nib.Nifti1Image(data.astype(np.float32), np.eye(4))
    return gzip.compress(image.to_bytes())


# ---------------------------------------------------------------------------------------------
# Happy paths
# ---------------------------------------------------------------------------------------------


async def test_upload_ct_and_mr_creates_two_studies(app, client, accounts):
    response = await upload(
        client,
        accounts["pacs1"].headers,
        ("CT_small.dcm", read_testdata("CT_small.dcm")),
        ("MR_small.dcm", read_testdata("MR_small.dcm")),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["study_ids"]) == len(set(body["study_ids"])) == 2
    assert len(body["case_ids"]) == len(set(body["case_ids"])) == 2
    assert all(study["created"] and study["new_instances"] == 1 for study in body["studies"])
    assert await row_counts(app) == {
        "studies": 2,
        "series": 2,
        "instances": 2,
        "cases": 2,
        "study_links": 2,
    }
    assert len(await audit_actions(app, "study.ingested")) == 2
    for study_id in body["study_ids"]:
        detail = await client.get(f"{UPLOAD_URL}/{study_id}", headers=accounts["admin1"].headers)
        assert detail.status_code == 200, detail.text
        assert detail.json()["source_format"] == "dicom"
        assert detail.json()["instance_count"] == 1


async def test_reupload_is_idempotent(app, client, accounts):
    files = [
        ("CT_small.dcm", read_testdata("CT_small.dcm")),
        ("MR_small.dcm", read_testdata("MR_small.dcm")),
    ]
    first = await upload(client, accounts["pacs1"].headers, *files)
    assert first.status_code == 201, first.text
    counts = await row_counts(app)
    keys = await app.state.store.list_keys("")

    second = await upload(client, accounts["pacs1"].headers, *files)

    assert second.status_code == 200, second.text
    assert second.json()["study_ids"] == first.json()["study_ids"]
    assert second.json()["case_ids"] == first.json()["case_ids"]
    for study in second.json()["studies"]:
        assert study["created"] is False
        assert (study["new_instances"], study["existing_instances"]) == (0, 1)
    assert await row_counts(app) == counts
    assert await app.state.store.list_keys("") == keys
    assert len(await audit_actions(app, "study.ingested")) == 2


async def test_instances_of_one_study_are_grouped_into_one_study_and_series(app, client, accounts):
    files = [(f"ct-{n}.dcm", ct_variant(instance_number=n)) for n in (1, 2, 3)]

    response = await upload(client, accounts["admin1"].headers, *files)

    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["study_ids"]) == 1
    assert body["studies"][0]["new_instances"] == 3
    assert await row_counts(app) == {
        "studies": 1,
        "series": 1,
        "instances": 3,
        "cases": 1,
        "study_links": 1,
    }
    stored = await instances(app)
    assert len({instance.sop_instance_uid for instance in stored}) == 3
    assert len({instance.object_key for instance in stored}) == 3
    detail = await client.get(
        f"{UPLOAD_URL}/{body['study_ids'][0]}", headers=accounts["admin1"].headers
    )
    assert (detail.json()["series_count"], detail.json()["instance_count"]) == (1, 3)


@pytest.mark.parametrize("name", ACCEPTED_FILES)
async def test_stored_object_keeps_pixels_and_matches_recorded_hash(app, client, accounts, name):
    original = load_testdata(name)

    response = await upload(client, accounts["admin1"].headers, (name, read_testdata(name)))

    assert response.status_code == 201, response.text
    [instance] = await instances(app)
    payload = await app.state.store.get(instance.object_key)
    assert hashlib.sha256(payload).hexdigest() == instance.sha256
    assert instance.size_bytes == len(payload)
    stored = pydicom.dcmread(BytesIO(payload))
    assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert stored.SOPClassUID == original.SOPClassUID
    assert stored.SOPInstanceUID == instance.sop_instance_uid != original.SOPInstanceUID
    assert stored.StudyInstanceUID != original.StudyInstanceUID
    assert stored.PatientIdentityRemoved == "YES"
    assert stored.PixelData == original.PixelData
    assert np.array_equal(stored.pixel_array, original.pixel_array)


async def test_burned_in_annotation_is_flagged_on_the_case(app, client, accounts):
    response = await upload(
        client,
        accounts["admin1"].headers,
        ("burned.dcm", ct_variant(BurnedInAnnotation="YES")),
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert "burned_in_annotation" in body["studies"][0]["flags"]
    case = await client.get(f"/api/cases/{body['case_ids'][0]}", headers=accounts["admin1"].headers)
    assert case.status_code == 200, case.text
    assert "burned_in_annotation" in case.json()["flags"]
    [instance] = await instances(app)
    assert instance.burned_in_annotation is True


async def test_no_burned_in_flag_without_the_attribute(client, accounts):
    response = await upload(
        client, accounts["admin1"].headers, ("ct.dcm", read_testdata("CT_small.dcm"))
    )
    assert response.status_code == 201, response.text
    assert response.json()["studies"][0]["flags"] == ["no_model"]  # CT: no pipeline


def _four_channel_volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((8, 8, 8, 4), dtype=np.float32)


def _brats_files(volume: np.ndarray) -> list[tuple[str, bytes]]:
    suffixes = ("t1n", "t1c", "t2w", "t2f")
    return [
        (f"BraTS-GLI-00001-000-{suffix}.nii.gz", nifti_gz(volume[..., channel]))
        for channel, suffix in enumerate(suffixes)
    ]


@pytest.mark.parametrize("layout", ["one_4d_file", "four_brats_files"])
async def test_nifti_upload_creates_an_mr_study(app, client, accounts, layout):
    volume = _four_channel_volume()
    if layout == "one_4d_file":
        files = [("brain.nii.gz", nifti_gz(volume))]
    else:
        files = _brats_files(volume)

    response = await upload(client, accounts["admin1"].headers, *files)

    assert response.status_code == 201, response.text
    [study_id] = response.json()["study_ids"]
    detail = await client.get(f"{UPLOAD_URL}/{study_id}", headers=accounts["admin1"].headers)
    assert detail.status_code == 200, detail.text
    assert detail.json()["source_format"] == "nifti"
    assert detail.json()["modality"] == "MR"
    [instance] = await instances(app)
    payload = await app.state.store.get(instance.object_key)
    assert hashlib.sha256(payload).hexdigest() == instance.sha256
    stored = nib.Nifti1Image.from_bytes(gzip.decompress(payload))
    assert stored.shape == (8, 8, 8, 4)
    assert np.array_equal(np.asarray(stored.dataobj), volume)


async def test_nifti_layouts_of_the_same_volume_are_one_study(client, accounts):
    volume = _four_channel_volume()
    headers = accounts["admin1"].headers
    first = await upload(client, headers, *_brats_files(volume))
    again = await upload(client, headers, *_brats_files(volume))
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["study_ids"] == first.json()["study_ids"]


async def test_race_ethnicity_comes_from_the_form_never_from_dicom(app, client, accounts):
    headers = accounts["admin1"].headers
    tagged = ct_variant(EthnicGroup="ZZETHNICZZ")

    response = await upload(client, headers, ("ct.dcm", tagged), data={"race_ethnicity": "Asian"})

    assert response.status_code == 201, response.text
    [study_id] = response.json()["study_ids"]
    detail = await client.get(f"{UPLOAD_URL}/{study_id}", headers=headers)
    assert detail.json()["race_ethnicity"] == "Asian"
    assert "ZZETHNICZZ" not in detail.text
    [instance] = await instances(app)
    payload = await app.state.store.get(instance.object_key)
    assert b"ZZETHNICZZ" not in payload
    assert "EthnicGroup" not in pydicom.dcmread(BytesIO(payload))


async def test_race_ethnicity_is_not_filled_from_dicom(client, accounts):
    headers = accounts["admin1"].headers
    response = await upload(client, headers, ("ct.dcm", ct_variant(EthnicGroup="ZZETHNICZZ")))
    assert response.status_code == 201, response.text
    [study_id] = response.json()["study_ids"]
    detail = await client.get(f"{UPLOAD_URL}/{study_id}", headers=headers)
    assert detail.json()["race_ethnicity"] is None
    assert "ZZETHNICZZ" not in detail.text


async def test_link_returns_the_original_uid_to_admin_and_integration(app, client, accounts):
    original = load_testdata("CT_small.dcm")
    response = await upload(
        client, accounts["pacs1"].headers, ("ct.dcm", read_testdata("CT_small.dcm"))
    )
    [study_id] = response.json()["study_ids"]

    for username in ("admin1", "pacs1"):
        link = await client.get(f"{UPLOAD_URL}/{study_id}/link", headers=accounts[username].headers)
        assert link.status_code == 200, link.text
        assert link.json()["original_study_uid"] == original.StudyInstanceUID
        assert link.json()["study_uid"] == response.json()["studies"][0]["study_uid"]
        assert link.json()["study_uid"] != original.StudyInstanceUID
    forbidden = await client.get(f"{UPLOAD_URL}/{study_id}/link", headers=accounts["rad1"].headers)
    assert_error(forbidden, 403)
    assert original.StudyInstanceUID not in forbidden.text

    reads = await audit_actions(app, "study.link_read")
    assert [(entry.actor, entry.target_id) for entry in reads] == [
        ("admin1", study_id),
        ("pacs1", study_id),
    ]
    verify = await client.get("/api/audit/verify", headers=accounts["admin1"].headers)
    assert verify.json()["ok"] is True


# ---------------------------------------------------------------------------------------------
# Object storage on S3 (moto_server)
# ---------------------------------------------------------------------------------------------


@pytest.mark.s3
async def test_s3_upload_stores_objects_with_recorded_hashes(settings, accounts, s3_server):
    overrides = s3_overrides(s3_server)
    async with app_with(settings, **overrides) as (s3_app, s3_client):
        response = await upload(
            s3_client,
            accounts["pacs1"].headers,
            ("CT_small.dcm", read_testdata("CT_small.dcm")),
            ("MR_small.dcm", read_testdata("MR_small.dcm")),
        )
        assert response.status_code == 201, response.text
        stored = await instances(s3_app)
        objects = bucket_objects(s3_server, overrides["s3_bucket"])
        assert set(objects) == {instance.object_key for instance in stored}
        for instance in stored:
            payload = objects[instance.object_key]
            assert hashlib.sha256(payload).hexdigest() == instance.sha256
            assert await s3_app.state.store.get(instance.object_key) == payload
            head = s3_server.client().stat_object(overrides["s3_bucket"], instance.object_key)
            assert head.metadata["x-amz-meta-sha256"] == instance.sha256
            assert pydicom.dcmread(BytesIO(payload)).PatientIdentityRemoved == "YES"

        again = await upload(
            s3_client,
            accounts["pacs1"].headers,
            ("CT_small.dcm", read_testdata("CT_small.dcm")),
        )
        assert again.status_code == 200, again.text
        assert set(bucket_objects(s3_server, overrides["s3_bucket"])) == set(objects)


@pytest.mark.s3
async def test_s3_bad_upload_leaves_the_bucket_empty(settings, accounts, s3_server):
    overrides = s3_overrides(s3_server)
    ct = read_testdata("CT_small.dcm")
    files = [(f"ct-{n}.dcm", ct_variant(instance_number=n)) for n in (1, 2, 3)]
    files.append(("cut.dcm", ct[: len(ct) // 2]))
    async with app_with(settings, **overrides) as (s3_app, s3_client):
        response = await upload(s3_client, accounts["pacs1"].headers, *files)
        assert_error(response, 400, "truncated_dicom")
        await assert_nothing_stored(s3_app)
    assert bucket_objects(s3_server, overrides["s3_bucket"]) == {}


@pytest.mark.s3
async def test_s3_failure_half_way_removes_written_objects(
    settings, accounts, s3_server, monkeypatch
):
    overrides = s3_overrides(s3_server)
    files = [(f"ct-{n}.dcm", ct_variant(instance_number=n)) for n in (1, 2, 3)]
    async with app_with(settings, **overrides) as (s3_app, s3_client):
        store = s3_app.state.store
        real_put = store.put
        calls = []

        async def flaky_put(key: str, data: bytes, **kwargs: Any) -> Any:
            calls.append(key)
            if len(calls) > 1:
                raise OSError("connection reset half way")
            return await real_put(key, data, **kwargs)

        monkeypatch.setattr(store, "put", flaky_put)
        response = await upload(s3_client, accounts["pacs1"].headers, *files)
        assert response.status_code >= 500, response.text
        assert len(calls) == 2
        await assert_nothing_stored(s3_app)
    assert bucket_objects(s3_server, overrides["s3_bucket"]) == {}


async def test_same_file_twice_in_one_request_is_stored_once(app, client, accounts):
    ct = read_testdata("CT_small.dcm")

    response = await upload(client, accounts["admin1"].headers, ("a.dcm", ct), ("b.dcm", ct))

    assert response.status_code == 201, response.text
    assert response.json()["studies"][0]["new_instances"] == 1
    assert (await row_counts(app))["instances"] == 1


async def test_dicom_and_nifti_in_one_request_are_two_studies(app, client, accounts):
    response = await upload(
        client,
        accounts["admin1"].headers,
        ("ct.dcm", read_testdata("CT_small.dcm")),
        ("brain.nii.gz", nifti_gz(_four_channel_volume())),
    )

    assert response.status_code == 201, response.text
    assert len(response.json()["study_ids"]) == 2
    async with app.state.session_factory() as session:
        formats = set((await session.scalars(select(Study.source_format))).all())
    assert formats == {"dicom", "nifti"}


async def test_later_instances_join_the_stored_study(app, client, accounts):
    headers = accounts["pacs1"].headers
    first = await upload(client, headers, ("ct-1.dcm", ct_variant(instance_number=1)))
    second = await upload(
        client,
        headers,
        ("ct-1.dcm", ct_variant(instance_number=1)),
        ("ct-2.dcm", ct_variant(instance_number=2)),
    )

    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.json()["study_ids"] == first.json()["study_ids"]
    study = second.json()["studies"][0]
    assert (study["created"], study["new_instances"], study["existing_instances"]) == (
        False,
        1,
        1,
    )
    assert await row_counts(app) == {
        "studies": 1,
        "series": 1,
        "instances": 2,
        "cases": 1,
        "study_links": 1,
    }


async def test_a_new_study_is_routed_from_the_rows_its_upload_created(app, client, accounts):
    """Routing a study its own transaction created reads the series and instances in hand:
    all four MR sequences of a new study in one upload queue it for brats at once."""
    phantom = brats_phantom_study()
    files = [f for seq in ("T1", "T1ce", "T2", "FLAIR") for f in series_files(seq, phantom[seq])]
    response = await upload(client, accounts["pacs1"].headers, *files)

    assert response.status_code == 201, response.text
    [study] = response.json()["studies"]
    assert (study["created"], study["new_instances"]) == (True, len(files))
    assert (study["pipeline"], study["status"]) == ("brats", "queued")
    counts = await row_counts(app)
    assert (counts["studies"], counts["series"], counts["instances"]) == (1, 4, len(files))


def _statements(app: Litestar) -> list[str]:
    """The first words of every SQL statement the app's engine runs from now on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    engine = app.state.session_factory.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    return seen


async def test_an_upload_does_not_reload_the_rows_it_looked_up_or_created(app, client, accounts):
    """Guards the ingest's round trips: a new study's series are looked up once and neither
    they nor the study are reloaded for routing; a re-sent file that changes nothing loads
    no series and writes nothing."""
    headers = accounts["pacs1"].headers
    data = read_testdata("MR_small.dcm")
    seen = _statements(app)
    assert (await upload(client, headers, ("mr.dcm", data))).status_code == 201
    new_study = list(seen)
    seen.clear()
    assert (await upload(client, headers, ("mr.dcm", data))).status_code == 200
    resent = list(seen)

    assert len([s for s in new_study if s.startswith("SELECT series.")]) == 1, new_study
    assert "SELECT studies.id FROM" not in new_study, new_study  # no refresh of the study
    assert [s for s in resent if s.startswith("SELECT series.")] == [], resent
    assert [s for s in resent if s.split()[0] in ("INSERT", "UPDATE", "DELETE")] == [], resent


async def test_concurrent_uploads_of_one_study_make_one_study(app, client, accounts):
    headers = accounts["pacs1"].headers
    batches = [
        [(f"ct-{n}.dcm", ct_variant(instance_number=n)) for n in (1, 2, 3)],
        [(f"ct-{n}.dcm", ct_variant(instance_number=n)) for n in (2, 3, 4)],
    ]

    responses = await asyncio.gather(*(upload(client, headers, *batch) for batch in batches))

    for response in responses:
        assert response.status_code in (200, 201), response.text
    assert responses[0].json()["study_ids"] == responses[1].json()["study_ids"]
    assert await row_counts(app) == {
        "studies": 1,
        "series": 1,
        "instances": 4,
        "cases": 1,
        "study_links": 1,
    }
    stored = await instances(app)
    assert sorted(await app.state.store.list_keys("studies/")) == sorted(
        i.object_key for i in stored
    )
    for instance in stored:
        payload = await app.state.store.get(instance.object_key, expected_sha256=instance.sha256)
        assert pydicom.dcmread(BytesIO(payload)).SOPInstanceUID == instance.sop_instance_uid


async def test_bare_dataset_without_file_meta_is_stored_as_a_part10_file(app, client, accounts):
    original = load_testdata("CT_small.dcm")
    bare_ds = pydicom.Dataset()
    bare_ds.update(copy.deepcopy(original))
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, bare_ds, implicit_vr=False, little_endian=True)
    bare = buffer.getvalue()
    assert bare[128:132] != b"DICM"

    response = await upload(client, accounts["admin1"].headers, ("bare", bare))

    assert response.status_code == 201, response.text
    [instance] = await instances(app)
    payload = await app.state.store.get(instance.object_key)
    assert payload[128:132] == b"DICM"
    stored = pydicom.dcmread(BytesIO(payload))
    assert stored.file_meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert np.array_equal(stored.pixel_array, original.pixel_array)
