"""NIfTI uploads are bounded in memory, not only in voxels (issue #11, item 13)."""

from __future__ import annotations

import gzip
import threading
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from control.dicom.nifti import assemble_mri_volume
from control.dicom.reader import UploadLimits
from control.domain.studies import prepare
from control.errors import PayloadTooLargeError

SHAPE = (32, 32, 16, 4)
VOXELS = int(np.prod(SHAPE))


def _limits(max_volume_voxels: int) -> UploadLimits:
    return UploadLimits(
        max_file_bytes=64 * 1024 * 1024,
        max_image_dimension=4096,
        max_image_pixels=4096**2,
        max_frames=1024,
        max_volume_voxels=max_volume_voxels,
    )


def _nifti(dtype: type, shape: tuple[int, ...] = SHAPE) -> bytes:
    data = (np.arange(int(np.prod(shape))) % 200).reshape(shape).astype(dtype)
    return gzip.compress(nib.Nifti1Image(data, np.eye(4)).to_bytes())


def test_float64_volume_over_the_byte_budget_is_refused():
    # Within the voxel limit, but float64 takes twice the float32 the limit budgets for.
    with pytest.raises(PayloadTooLargeError) as caught:
        assemble_mri_volume([("brain.nii.gz", _nifti(np.float64))], _limits(VOXELS))
    assert caught.value.code == "volume_too_large"
    assert caught.value.detail["dtype"] == "float64"


def test_float32_volume_at_the_limit_is_accepted():
    volume = assemble_mri_volume([("brain.nii.gz", _nifti(np.float32))], _limits(VOXELS))
    assert volume.data.dtype == np.float32 and volume.data.shape == (4, *SHAPE[:3])


def test_four_channel_file_is_converted_one_channel_at_a_time():
    shape = (64, 64, 64, 4)  # large enough that fixed overheads do not dominate
    data = _nifti(np.int16, shape)
    result_bytes = int(np.prod(shape)) * 4
    tracemalloc.start()
    try:
        volume = assemble_mri_volume([("brain.nii.gz", data)], _limits(result_bytes))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume.data.nbytes == result_bytes
    # The float32 result, the inflated file (int16: half of it) and one channel in flight;
    # converting the whole file at once and then reordering it needed 2.5x (1.9x now).
    assert peak < 2.2 * result_bytes, f"peak {peak} for a {result_bytes}-byte result"


def test_heavy_work_is_limited_to_two_at_once(monkeypatch):
    running, most = 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def slow(*args):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(2)
        with lock:
            running -= 1
        return []

    monkeypatch.setattr(prepare, "_prepare_upload", slow)
    threads = [
        threading.Thread(target=prepare.prepare_upload, args=([], _limits(1), b"k"))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    threading.Event().wait(0.3)
    release.set()
    for thread in threads:
        thread.join()
    assert most == 2
