"""Turn uploaded files into de-identified objects ready to store (CPU work, no I/O).

Everything here runs before anything is written: a file that fails validation or
de-identification stops the whole upload.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from io import UnsupportedOperation

import numpy as np
import pydicom

from control.dicom.deid import DeidResult, deidentify, pseudonymous_uid
from control.dicom.nifti import NIFTI_SOP_CLASS, assemble_mri_volume, looks_like_nifti
from control.dicom.reader import UploadLimits, looks_like_dicom, read_dicom
from control.errors import InvalidInputError, MedVisionError, UnsupportedMediaError
from control.imaging.volumes import nifti_bytes


@dataclass
class PreparedInstance:
    """One de-identified object and what the database records about it."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    payload: bytes
    suffix: str
    modality: str
    body_part: str | None
    sequence_type: str | None
    rows: int | None
    columns: int | None
    frames: int
    photometric_interpretation: str | None
    burned_in_annotation: bool
    #: The uploaded file's name, for error details (never logged or stored).
    filename: str = ""
    #: Pseudonym -> original of every UID de-identification replaced (PHI: stored only
    #: encrypted, see control.results.records; empty for NIfTI).
    original_uids: dict[str, str] = field(default_factory=dict, repr=False)
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.payload).hexdigest()


@dataclass
class PreparedStudy:
    """The instances of one study plus its pseudonymous identity and coarse demographics."""

    study_uid: str
    original_study_uid: str
    pseudo_patient_id: str
    source_format: str
    study_date: date | None
    age_band: str | None
    sex: str | None
    instances: list[PreparedInstance] = field(default_factory=list)
    #: The original identifying header subset (PHI: stored only encrypted; empty for NIfTI).
    identifying: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def modality(self) -> str:
        modalities = sorted({instance.modality for instance in self.instances})
        return "/".join(modalities) if modalities else "OT"

    @property
    def burned_in_annotation(self) -> bool:
        return any(instance.burned_in_annotation for instance in self.instances)


def _dicom_date(value: object) -> date | None:
    try:
        return datetime.strptime(str(value), "%Y%m%d").date() if value else None
    except ValueError:
        return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


class _Pieces:
    """A write-only file for ``pydicom.dcmwrite`` that keeps the pieces written to it.

    pydicom encodes each element into a buffer of its own and writes that buffer's bytes to
    the file once; into a ``BytesIO`` that means the pixel data is copied again into an ever
    growing buffer (and once more by ``getvalue``): 15-35 ms for a 2048² radiograph on these
    machines. Here the pieces are kept as they come and joined once, the same bytes in order.
    """

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        piece = data if isinstance(data, bytes) else bytes(data)
        self.pieces.append(piece)
        self.size += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = 0) -> int:
        """Only "stay where you are" is possible: nothing written can be rewritten."""
        if (whence == 0 and offset == self.size) or (whence in (1, 2) and offset == 0):
            return self.size
        raise UnsupportedOperation("the de-identified data set is written in one pass")


def encode_dicom(ds: pydicom.Dataset) -> bytes:
    """``ds`` as a Part 10 file: exactly the bytes ``pydicom.dcmwrite(buffer, ds,
    enforce_file_format=True)`` writes, in one pass without re-copying the pixel data."""
    out = _Pieces()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return b"".join(out.pieces)


def _dicom_instance(result: DeidResult) -> PreparedInstance:
    ds = result.dataset
    return PreparedInstance(
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        payload=encode_dicom(ds),
        suffix="dcm",
        modality=str(ds.get("Modality") or "OT").upper(),
        body_part=str(ds.get("BodyPartExamined")) if ds.get("BodyPartExamined") else None,
        sequence_type=result.sequence_type,
        rows=_int_or_none(ds.get("Rows")),
        columns=_int_or_none(ds.get("Columns")),
        frames=_int_or_none(ds.get("NumberOfFrames")) or 1,
        photometric_interpretation=str(ds.get("PhotometricInterpretation") or "") or None,
        burned_in_annotation=result.burned_in_annotation,
        original_uids=result.uid_map,
    )


def _nifti_study(files: list[tuple[str, bytes]], limits: UploadLimits, key: bytes) -> PreparedStudy:
    volume = assemble_mri_volume(files, limits)
    # A fresh header keeps geometry only: descrip, aux_file, intent and db_name can carry PHI.
    channels_last = np.moveaxis(volume.data, 0, -1)  # a view: the voxels are float32
    payload = nifti_bytes(channels_last, volume.affine, compresslevel=9)
    # Identity from the decoded voxels and geometry, not the file bytes: the same volume
    # re-compressed (gzip stores a timestamp) or re-split into channels is the same study.
    # Hashed in place (no copy of the voxels).
    digest_state = hashlib.sha256(np.ascontiguousarray(volume.data).data)
    digest_state.update(volume.affine.tobytes())
    content = digest_state.hexdigest()
    anchor = "nifti:" + content
    study_uid = pseudonymous_uid(anchor + ":study", key)
    digest = hmac.new(key, anchor.encode(), hashlib.sha256).hexdigest()
    instance = PreparedInstance(
        study_uid=study_uid,
        series_uid=pseudonymous_uid(anchor + ":series", key),
        sop_instance_uid=pseudonymous_uid(anchor + ":instance", key),
        sop_class_uid=NIFTI_SOP_CLASS,
        payload=payload,
        suffix="nii.gz",
        modality="MR",
        body_part="BRAIN",
        sequence_type="T1,T1ce,T2,FLAIR",
        rows=int(volume.data.shape[1]),
        columns=int(volume.data.shape[2]),
        frames=int(volume.data.shape[3]),
        photometric_interpretation=None,
        burned_in_annotation=False,
        filename=files[0][0],
    )
    return PreparedStudy(
        study_uid=study_uid,
        original_study_uid=anchor,
        pseudo_patient_id="ANON-" + digest[:12].upper(),
        source_format="nifti",
        study_date=None,
        age_band=None,
        sex=None,
        instances=[instance],
    )


#: Uploads decoded at once (DICOM pixels, NIfTI volumes, edited masks): each may hold up to
#: ``max_volume_voxels * 4`` bytes of voxels and a copy, so two large uploads arriving
#: together wait for a slot instead of taking the machine's memory between them.
HEAVY_WORK_SLOTS = threading.BoundedSemaphore(2)


def prepare_upload(
    files: list[tuple[str, bytes]], limits: UploadLimits, key: bytes
) -> list[PreparedStudy]:
    """Validate and de-identify every file; group the results into studies.

    DICOM files are validated, de-identified and grouped by (pseudonymous) Study Instance
    UID; NIfTI files form one 4-channel MRI study per request. Raises on the first bad file.
    Blocking (run it in a worker thread); at most :data:`HEAVY_WORK_SLOTS` run at once.
    """
    with HEAVY_WORK_SLOTS:
        return _prepare_upload(files, limits, key)


@dataclass
class RejectedFile:
    """A file of a batch that failed alone (the rest of the batch goes on)."""

    #: The name the caller gave the file; callers of the network paths make them unique.
    filename: str
    error: MedVisionError


def prepare_each(
    files: list[tuple[str, bytes]], limits: UploadLimits, key: bytes
) -> tuple[list[PreparedStudy], list[RejectedFile]]:
    """Like :func:`prepare_upload`, but a bad DICOM file is rejected alone.

    For the DICOM network paths (C-STORE, STOW-RS), where each instance has a status of its
    own. NIfTI files are not accepted here. Blocking; shares :data:`HEAVY_WORK_SLOTS`.
    """
    return merge_each([prepare_file(name, data, limits, key) for name, data in files])


def prepare_file(
    name: str, data: bytes, limits: UploadLimits, key: bytes
) -> list[PreparedStudy] | RejectedFile:
    """One DICOM file of a per-instance batch, prepared or rejected with its error; the
    results of a batch go to :func:`merge_each`. Blocking; shares :data:`HEAVY_WORK_SLOTS`."""
    try:
        if not looks_like_dicom(data):
            raise UnsupportedMediaError(
                f"{name}: not a DICOM Part 10 file", code="not_dicom", detail={"filename": name}
            )
        with HEAVY_WORK_SLOTS:
            return _prepare_dicom([(name, data)], limits, key)
    except MedVisionError as exc:
        exc.detail.setdefault("filename", name)
        return RejectedFile(name, exc)


def merge_each(
    results: list[list[PreparedStudy] | RejectedFile],
) -> tuple[list[PreparedStudy], list[RejectedFile]]:
    """The files of a batch (:func:`prepare_file` results, in order) grouped by study; the
    same instance twice is kept once, two contents under one UID reject the later file."""
    studies: dict[str, PreparedStudy] = {}
    rejected: list[RejectedFile] = []
    for result in results:
        if isinstance(result, RejectedFile):
            rejected.append(result)
            continue
        for study in result:
            merged = studies.setdefault(study.study_uid, study)
            if merged is not study:
                merged.instances.extend(study.instances)
    for study in studies.values():
        _drop_duplicates(study, rejected)
    return list(studies.values()), rejected


def _drop_duplicates(study: PreparedStudy, rejected: list[RejectedFile]) -> None:
    """The same instance twice in one batch is stored once; two contents under one UID fail."""
    kept: dict[str, PreparedInstance] = {}
    for instance in list(study.instances):
        first = kept.setdefault(instance.sop_instance_uid, instance)
        if first is instance:
            continue
        study.instances.remove(instance)
        if first.sha256 != instance.sha256:
            error = InvalidInputError(
                f"{instance.filename}: two different files carry the same SOP Instance UID",
                code="duplicate_instance_uid",
                detail={"filename": instance.filename},
            )
            rejected.append(RejectedFile(instance.filename, error))


def _prepare_upload(
    files: list[tuple[str, bytes]], limits: UploadLimits, key: bytes
) -> list[PreparedStudy]:
    if not files:
        raise InvalidInputError("no files were uploaded", code="no_files")
    dicom_files: list[tuple[str, bytes]] = []
    nifti_files: list[tuple[str, bytes]] = []
    for name, data in files:
        if looks_like_nifti(data, name):
            nifti_files.append((name, data))
        elif looks_like_dicom(data):
            dicom_files.append((name, data))
        else:
            raise UnsupportedMediaError(
                f"{name}: neither DICOM nor NIfTI", code="not_dicom", detail={"filename": name}
            )
    studies = {study.study_uid: study for study in _prepare_dicom(dicom_files, limits, key)}
    if nifti_files:
        nifti = _nifti_study(nifti_files, limits, key)
        studies[nifti.study_uid] = nifti
    return list(studies.values())


def _prepare_dicom(
    dicom_files: list[tuple[str, bytes]], limits: UploadLimits, key: bytes
) -> list[PreparedStudy]:
    """Validate and de-identify DICOM files, grouped by study; raises on the first bad file."""
    studies: dict[str, PreparedStudy] = {}
    seen: dict[str, str] = {}
    for name, data in dicom_files:
        parsed = read_dicom(data, name, limits)
        # The parsed data set is this function's own: de-identify it without a deep copy.
        result = deidentify(parsed.dataset, key, in_place=True)
        instance = _dicom_instance(result)
        instance.filename = name
        if instance.sop_instance_uid in seen:
            if seen[instance.sop_instance_uid] != instance.sha256:
                raise InvalidInputError(
                    f"{name}: two different files carry the same SOP Instance UID",
                    code="duplicate_instance_uid",
                    detail={"filename": name},
                )
            continue  # the same file twice in one upload is stored once
        seen[instance.sop_instance_uid] = instance.sha256
        study = studies.get(instance.study_uid)
        if study is None:
            study = studies[instance.study_uid] = PreparedStudy(
                study_uid=instance.study_uid,
                original_study_uid=result.original_study_uid,
                pseudo_patient_id=result.pseudo_patient_id,
                source_format="dicom",
                study_date=_dicom_date(result.dataset.get("StudyDate")),
                age_band=result.age_band,
                sex=result.sex,
                identifying=result.identifying,
            )
        study.instances.append(instance)
    return list(studies.values())
