"""``medvision dicom listen`` as a real process, driven by DCMTK (echoscu, storescu) and a
pynetdicom SCU: C-ECHO, real and generated files in every accepted transfer syntax, refused
calling AEs, a corrupt instance failing alone, one case from several associations and HTTP,
and the association's audit entry.

One listener process serves the whole module (SQLite database and filesystem store in a
temporary data directory); each test uses studies of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from control.app import create_app
from control.dicom.deid import pseudonymous_uid
from tests.fixtures.ct import ct_slice
from tests.fixtures.dicom_listener import PASSWORD, ListenerNode, start_listener
from tests.fixtures.dx import DX_FOR_PRESENTATION, chest_dx
from tests.fixtures.orthanc import start_orthanc

STORESCU = shutil.which("storescu")
ECHOSCU = shutil.which("echoscu")
pytestmark = pytest.mark.skipif(
    STORESCU is None or ECHOSCU is None,
    reason="DCMTK (Debian package dcmtk) is not installed: no storescu/echoscu",
)

ACCOUNTS = {
    "STORESCU": ("pacs-bridge", "integration"),
    "PYSCU": ("pacs-bridge", "integration"),
    "RADAE": ("rad-mapped", "radiologist"),
    "ORTHANC": ("pacs-bridge", "integration"),
}
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

#: Real files from pydicom's test data: (name, transfer syntax), monochrome images of
#: accepted SOP classes with distinct SOP Instance UIDs.
REAL_FILES = [
    ("CT_small.dcm", "Explicit VR Little Endian"),
    ("MR_small_RLE.dcm", "RLE Lossless"),
    ("image_dfl.dcm", "Deflated Explicit VR Little Endian"),
    ("693_J2KI.dcm", "JPEG 2000"),
    ("JPGExtended.dcm", "JPEG Extended"),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ListenerNode]:
    with start_listener(tmp_path_factory.mktemp("listener"), ACCOUNTS) as running:
        yield running


def pseudo(node: ListenerNode, original_uid: str) -> str:
    return pseudonymous_uid(original_uid, node.settings().key("deid"))


def instance_count(node: ListenerNode, study_uid: str) -> str:
    """SQL counting the stored instances of the study with original UID ``study_uid``."""
    return (
        "SELECT count(*) FROM instances i JOIN series s ON i.series_id = s.id "
        f"JOIN studies st ON s.study_id = st.id WHERE st.study_uid = '{pseudo(node, study_uid)}'"
    )


def case_count(node: ListenerNode, study_uid: str) -> str:
    return (
        "SELECT count(*) FROM cases c JOIN studies st ON c.study_id = st.id "
        f"WHERE st.study_uid = '{pseudo(node, study_uid)}'"
    )


#: storescu's option proposing each transfer syntax (DCMTK converts nothing compressed).
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.1": "-x=",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
}


def transfer_syntax(path: Path | str) -> str:
    return str(dcmread(str(path), stop_before_pixels=True).file_meta.TransferSyntaxUID)


def storescu(node: ListenerNode, paths: list[Path | str], aet: str = "STORESCU") -> str:
    """Send files of one transfer syntax in one association (storescu proposes the syntax
    named by its ``-x`` option); the combined output."""
    assert STORESCU is not None
    (syntax,) = {transfer_syntax(p) for p in paths}
    done = subprocess.run(
        [STORESCU, STORESCU_PROPOSE[syntax], "-aet", aet, "-aec", node.ae_title]
        + ["127.0.0.1", str(node.port)]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def pynetdicom_store(node: ListenerNode, paths: list[Path]) -> list[int]:
    """Send files, whatever their transfer syntaxes, in one pynetdicom association (each
    as encoded, not re-encoded); their statuses."""
    ae = AE(ae_title="PYSCU")
    for path in paths:
        header = dcmread(path, stop_before_pixels=True)
        ae.add_requested_context(str(header.SOPClassUID), transfer_syntax(path))
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(path).Status) for path in paths]
    assoc.release()
    return statuses


def compress(tool: list[str], source: Path, target: Path) -> Path:
    """Re-encode ``source`` with a DCMTK codec tool (dcmcjpeg, dcmcjpls, dcmcrle)."""
    subprocess.run([*tool, str(source), str(target)], check=True, capture_output=True)
    return target


def scu(calling_ae: str = "PYSCU") -> AE:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(DX_FOR_PRESENTATION, ExplicitVRLittleEndian)
    ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
    return ae


def audit_entries(node: ListenerNode, action: str) -> list[dict[str, object]]:
    rows = node.query(
        "SELECT actor, actor_role, outcome, details FROM audit_log WHERE action = ?", action
    )
    return [{"actor": a, "role": r, "outcome": o, "details": json.loads(d)} for a, r, o, d in rows]


def test_pynetdicom_c_echo(node: ListenerNode) -> None:
    """A pynetdicom SCU from an allowed AE title associates and gets 0x0000 for C-ECHO."""
    assoc = scu().associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0x0000


def test_echoscu(node: ListenerNode) -> None:
    """DCMTK's echoscu verifies the node."""
    assert ECHOSCU is not None
    done = subprocess.run(
        [ECHOSCU, "-aet", "STORESCU", "-aec", node.ae_title, "127.0.0.1", str(node.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("calling_ae", ["STRANGER", "RADAE"])
def test_refused_calling_ae_is_rejected_at_association(node: ListenerNode, calling_ae: str) -> None:
    """An AE title not in the mapping, or mapped to an account that may not store (here a
    radiologist), gets A-ASSOCIATE-RJ: rejected-permanent, service user, calling AE title not
    recognised; echoscu reports the same."""
    assoc = scu(calling_ae).associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_rejected
    primitive = assoc.acceptor.primitive
    assert primitive is not None
    assert (primitive.result, primitive.result_source, primitive.diagnostic) == (1, 1, 3)
    assert ECHOSCU is not None
    done = subprocess.run(
        [ECHOSCU, "-aet", calling_ae, "-aec", node.ae_title, "127.0.0.1", str(node.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Calling AE Title Not Recognized" in done.stdout + done.stderr


def test_storescu_real_files_in_their_transfer_syntaxes(node: ListenerNode) -> None:
    """pydicom's real test files (explicit LE, RLE, deflated, JPEG 2000, JPEG extended),
    sent by storescu (one association per transfer syntax), are all stored, each under its
    study, one case per study."""
    paths = [get_testdata_file(name) for name, _syntax in REAL_FILES]
    assert all(paths), "pydicom test files missing"
    for path in paths:
        output = storescu(node, [str(path)])
        assert "Store Failed" not in output
    studies: dict[str, int] = {}
    for path in paths:
        uid = str(dcmread(str(path), stop_before_pixels=True).StudyInstanceUID)
        studies[uid] = studies.get(uid, 0) + 1
    for uid, count in studies.items():
        assert node.wait_until(instance_count(node, uid), count) == count, node.log_tail()
        assert node.wait_until(case_count(node, uid), 1) == 1


def generated_compressed(tmp_path: Path, tools: list[list[str]]) -> tuple[str, str, list[Path]]:
    """A 4-image DX study and a 4-slice CT series, image ``i`` of each re-encoded by DCMTK
    tool ``tools[i]``; (DX study UID, CT study UID, files)."""
    if any(shutil.which(tool[0]) is None for tool in tools):
        pytest.skip("DCMTK codec tools (dcmcjpeg, dcmcjpls, dcmcrle) are not installed")
    dx_study, ct_study, ct_series = generate_uid(), generate_uid(), generate_uid()
    sent = []
    for index, tool in enumerate(tools):
        dx = tmp_path / f"dx{index}.dcm"
        dx.write_bytes(chest_dx(64, seed=index, study_uid=dx_study))
        ct = tmp_path / f"ct{index}.dcm"
        ct.write_bytes(ct_slice(64, study_uid=ct_study, series_uid=ct_series, index=index))
        sent.append(compress(tool, dx, tmp_path / f"dx{index}c.dcm"))
        sent.append(compress(tool, ct, tmp_path / f"ct{index}c.dcm"))
    return dx_study, ct_study, sent


def test_storescu_generated_series_compressed(node: ListenerNode, tmp_path: Path) -> None:
    """A generated DX study and CT series in JPEG lossless SV1, JPEG-LS lossless and RLE
    (DCMTK codecs), sent by storescu, form one case per study with every instance."""
    tools = [["dcmcjpeg", "+e1"], ["dcmcjpls", "+el"], ["dcmcrle"]]
    dx_study, ct_study, sent = generated_compressed(tmp_path, tools)
    for path in sent:
        assert "Store Failed" not in storescu(node, [path])
    for study in (dx_study, ct_study):
        assert node.wait_until(instance_count(node, study), 3) == 3, node.log_tail()
        assert node.wait_until(case_count(node, study), 1) == 1


def test_mixed_transfer_syntaxes_in_one_association(node: ListenerNode, tmp_path: Path) -> None:
    """One pynetdicom association carrying generated images in JPEG lossless process 14
    and SV1, JPEG-LS lossless and near-lossless, RLE and explicit LE, plus pydicom's JPEG
    2000 lossless MR: every instance gets 0x0000 and is stored."""
    tools = [["dcmcjpeg", "+el"], ["dcmcjpeg", "+e1"], ["dcmcjpls", "+el"], ["dcmcrle"]]
    tools += [["dcmcjpls", "+en"], ["dcmconv", "+te"]]
    dx_study, ct_study, sent = generated_compressed(tmp_path, tools)
    j2k = get_testdata_file("MR_small_jp2klossless.dcm")
    assert j2k is not None
    paths = [*sent, Path(str(j2k))]
    assert len({transfer_syntax(p) for p in paths}) == 7
    assert pynetdicom_store(node, paths) == [0] * len(paths)
    for study in (dx_study, ct_study):
        assert node.wait_until(instance_count(node, study), 6) == 6, node.log_tail()
        assert node.wait_until(case_count(node, study), 1) == 1


def test_corrupt_instance_fails_alone(node: ListenerNode) -> None:
    """In one association, an instance without Rows gets 0xA900 and one with truncated
    pixel data 0xC000 (each with an Error Comment naming only the error code); the good
    instances before and after them are stored, the association is audited with the counts."""
    study = generate_uid()
    good = [dcmread(BytesIO(chest_dx(64, seed=s, study_uid=study))) for s in (1, 2)]
    no_rows = dcmread(BytesIO(chest_dx(64, seed=3, study_uid=study)))
    del no_rows.Rows
    truncated = dcmread(BytesIO(chest_dx(64, seed=4, study_uid=study)))
    truncated.PixelData = truncated.PixelData[:128]
    assoc = scu().associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    statuses: list[Dataset] = [
        assoc.send_c_store(ds) for ds in (good[0], no_rows, truncated, good[1])
    ]
    assoc.release()
    assert [s.Status for s in statuses] == [0x0000, 0xA900, 0xC000, 0x0000]
    assert statuses[1].ErrorComment == "MedVision: missing_attribute"
    assert statuses[2].ErrorComment == "MedVision: truncated_dicom"
    assert node.wait_until(instance_count(node, study), 2) == 2, node.log_tail()
    wanted = {"0xa900:missing_attribute": 1, "0xc000:truncated_dicom": 1}

    def audited() -> list[dict[str, object]]:
        return [
            entry
            for entry in audit_entries(node, "dicom.association")
            if entry["details"]["failures"] == wanted  # type: ignore[index]
        ]

    node.wait_until("SELECT count(*) FROM audit_log WHERE outcome = 'partial'", 1)
    (entry,) = audited()
    assert entry["actor"] == "pacs-bridge"
    assert entry["role"] == "integration"
    details = entry["details"]
    assert isinstance(details, dict)
    assert details["calling_ae"] == "PYSCU"
    assert (details["received"], details["accepted"], details["rejected"]) == (4, 2, 2)
    assert details["stored_new"] == 2
    assert study not in json.dumps(details)


async def test_two_associations_and_http_upload_form_one_case(node: ListenerNode) -> None:
    """Three slices of one CT series: the first by storescu, the second by a pynetdicom SCU
    in another association, the third by ``POST /api/studies``: one study, one case, three
    instances."""
    study, series = generate_uid(), generate_uid()
    slices = [ct_slice(64, study_uid=study, series_uid=series, index=i) for i in range(3)]
    first = node.data_dir.parent / "slice0.dcm"
    first.write_bytes(slices[0])
    storescu(node, [first])
    assoc = scu().associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.send_c_store(dcmread(BytesIO(slices[1]))).Status == 0x0000
    assoc.release()
    assert node.wait_until(instance_count(node, study), 2) == 2, node.log_tail()

    settings = node.settings().model_copy(update={"worker_enabled": False})
    async with AsyncTestClient(app=create_app(settings)) as client:
        token = await client.post(
            "/api/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "pacs-bridge",
                "client_secret": PASSWORD,
            },
        )
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        response = await client.post(
            "/api/studies",
            files=[("files", ("slice2.dcm", slices[2], "application/dicom"))],
            headers=headers,
        )
        assert response.status_code in (200, 201), response.text
    assert node.wait_until(instance_count(node, study), 3) == 3
    assert node.query(case_count(node, study))[0][0] == 1


def test_spool_is_empty_after_associations(node: ListenerNode) -> None:
    """Nothing stays spooled (original, identifying bytes) once associations are stored."""
    spool = node.data_dir / "dicom-spool"
    assoc = scu().associate("127.0.0.1", node.port, ae_title=node.ae_title)
    study = generate_uid()
    assert assoc.send_c_store(dcmread(BytesIO(chest_dx(64, study_uid=study)))).Status == 0
    assoc.release()
    assert node.wait_until(instance_count(node, study), 1) == 1
    node.wait_until("SELECT 1", 1, timeout_s=1)
    leftovers = [p for p in spool.rglob("*") if p.is_file()]
    for _ in range(50):
        if not leftovers:
            break
        node.wait_until("SELECT 0", 1, timeout_s=0.2)
        leftovers = [p for p in spool.rglob("*") if p.is_file()]
    assert leftovers == []


def test_batches_in_flight_together_store_everything_once(
    node: ListenerNode, tmp_path: Path
) -> None:
    """One association of 230 instances (four batches of up to 64, stored by two ingest
    processes side by side: a 160-slice CT series spread over three of them, and 70
    one-image DX studies): every instance is stored once, the series is one study with one
    case, and the association's audit entry, written after the last batch, counts them all;
    its spool is gone."""
    study, series = generate_uid(), generate_uid()
    paths = []
    for index in range(160):
        path = tmp_path / f"ct{index:03d}.dcm"
        path.write_bytes(ct_slice(32, study_uid=study, series_uid=series, index=index, seed=index))
        paths.append(path)
    dx_studies = [generate_uid() for _ in range(70)]
    for index, dx_study in enumerate(dx_studies):
        path = tmp_path / f"dx{index:03d}.dcm"
        path.write_bytes(chest_dx(32, seed=index, study_uid=dx_study))
        paths.append(path)
    spools_before = {p.name for p in (node.data_dir / "dicom-spool").iterdir()}
    storescu(node, paths)
    audited = node.wait_until(
        "SELECT count(*) FROM audit_log WHERE action = 'dicom.association' "
        "AND details LIKE '%\"received\": 230%'",
        1,
    )
    assert audited == 1, node.log_tail()
    (entry,) = [
        entry
        for entry in audit_entries(node, "dicom.association")
        if entry["details"]["received"] == 230  # type: ignore[index]
    ]
    details = entry["details"]
    assert isinstance(details, dict)
    assert (details["accepted"], details["stored_new"], details["stored_existing"]) == (230, 230, 0)
    assert details["failed_after_acceptance"] == {}
    assert node.query(instance_count(node, study))[0][0] == 160
    assert node.query(case_count(node, study))[0][0] == 1
    assert sum(node.query(instance_count(node, uid))[0][0] for uid in dx_studies) == 70
    spools_after = {p.name for p in (node.data_dir / "dicom-spool").iterdir()}
    assert spools_after <= spools_before


def test_orthanc_pushes_a_study_to_the_listener(node: ListenerNode, tmp_path: Path) -> None:
    """A real PACS peer: Orthanc, given MedVision as a DICOM modality, C-STOREs a study it
    holds (a generated 3-slice CT series) to the listener; it lands as one case."""
    study, series = generate_uid(), generate_uid()
    slices = [ct_slice(64, study_uid=study, series_uid=series, index=i) for i in range(3)]
    peers = {"MEDVISION": (node.ae_title, "127.0.0.1", node.port)}
    with start_orthanc(tmp_path / "orthanc", modalities=peers) as pacs:
        for data in slices:
            request = urllib.request.Request(f"{pacs.url}/instances", data=data, method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
        ids = [instance["ID"] for instance in pacs.instances_of_study(study)]
        assert len(ids) == 3
        answer = pacs.post_json("/modalities/MEDVISION/store", {"Resources": ids})
        assert answer.get("FailedInstancesCount", 0) == 0, answer
    assert node.wait_until(instance_count(node, study), 3) == 3, node.log_tail()
    assert node.query(case_count(node, study))[0][0] == 1
    calling = [e["details"]["calling_ae"] for e in audit_entries(node, "dicom.association")]  # type: ignore[index]
    assert "ORTHANC" in calling


def test_associations_beyond_the_maximum_are_rejected_transiently(node: ListenerNode) -> None:
    """With MEDVISION_DICOM_MAX_ASSOCIATIONS (10) open, the next request gets A-ASSOCIATE-RJ
    rejected-transient, local limit exceeded; once one is released, associating works."""
    held = [scu().associate("127.0.0.1", node.port, ae_title=node.ae_title) for _ in range(10)]
    try:
        assert all(assoc.is_established for assoc in held)
        extra = scu().associate("127.0.0.1", node.port, ae_title=node.ae_title)
        assert extra.is_rejected
        primitive = extra.acceptor.primitive
        assert primitive is not None
        assert (primitive.result, primitive.result_source, primitive.diagnostic) == (2, 3, 2)
    finally:
        for assoc in held:
            assoc.release()
    again = scu().associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert again.is_established
    assert again.send_c_echo().Status == 0
    again.release()


def test_listener_log_holds_no_identifiers(node: ListenerNode) -> None:
    """After the tests above, the listener's log names no patient and no original UID of
    what was sent (the generated patients' names and IDs, pydicom's CT_small study)."""
    text = node.log_path.read_text(errors="replace")
    ct_small = get_testdata_file("CT_small.dcm")
    assert ct_small is not None
    header = dcmread(ct_small, stop_before_pixels=True)
    for value in (
        "Synthetic^",
        "SYNTH-CXR",
        "SYNTH-CT",
        str(header.StudyInstanceUID),
        str(header.SOPInstanceUID),
        str(header.PatientName),
    ):
        assert value not in text
    assert "dicom_association_closed" in text


def test_sigterm_stops_cleanly_after_storing(tmp_path: Path) -> None:
    """SIGTERM right after an association: the listener stores what it spooled, audits
    the association, empties the spool and exits with status 0."""
    with start_listener(tmp_path, {"PYSCU": ("pacs-bridge", "integration")}) as own:
        study = generate_uid()
        assoc = scu().associate("127.0.0.1", own.port, ae_title=own.ae_title)
        assert assoc.send_c_store(dcmread(BytesIO(chest_dx(64, study_uid=study)))).Status == 0
        assoc.release()
        own.process.terminate()
        assert own.process.wait(timeout=60) == 0, own.log_tail()
        assert own.query(instance_count(own, study))[0][0] == 1
        assert len(audit_entries(own, "dicom.association")) == 1
        assert [p for p in (own.data_dir / "dicom-spool").rglob("*") if p.is_file()] == []
