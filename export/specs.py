"""One export spec per served model: everything ``medvision export KIND`` does differently.

A spec names the served ensemble it exports for (its :class:`ServedContract` from
``medvision_contract.served``: the network model's name comes from there) and says how
to rebuild the trained network from its checkpoint metadata, what the network's ONNX
inputs and outputs are, which ``parameters`` its ``config.pbtxt`` and the pre/post models'
configs get, how those parameters are read back (to bring the pre/post configs in line
with an exported network), and whether the network also returns class activation maps or
can be checked on real DICOM inputs. The rest of ``export/`` looks a model up in
:data:`EXPORT_SPECS`; ``tests/export/test_specs.py`` fails while a served model lacks a spec
or a spec lacks a piece.

Nothing here imports torch at import time: the network builders import it when called, so
``medvision --help`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from medvision_contract.ct_windows import channels_per_slice, format_windows, parse_windows
from medvision_contract.served import BRATS, CT_HEAD, CXR, ServedContract

if TYPE_CHECKING:
    from torch import nn

    from training.engine.meta import BratsMeta, CtHeadMeta, CxrMeta

#: A served model's name, the key of :data:`EXPORT_SPECS` (``cxr``, ``brats``, ``ct_head``).
ModelKind = str
#: A network's checkpoint metadata in its plain form (``CheckpointMeta.to_dict``).
Meta = Mapping[str, Any]

BRATS_OVERLAP = 0.5
CXR_NORMALISATION = (
    "[0,1] MONOCHROME2 image, resized with padding to input_size x input_size, "
    "then (x - mean) / std"
)
CT_HEAD_NORMALISATION = (
    "HU slice resized with air padding to input_size x input_size, then each window "
    "(name:centre:width) mapped linearly to [0,1] and clipped; context_slices neighbours "
    "each side stacked as channels (lowest slice first)"
)


@dataclass(frozen=True)
class NetworkTensor:
    """One network input or output: name and dimensions without the batch axis (FP32)."""

    name: str
    dims: tuple[int, ...]


NetworkIO = tuple[list[NetworkTensor], list[NetworkTensor]]


@dataclass(frozen=True)
class ExportSpec:
    """What exporting one served model's network involves (see the module docstring)."""

    #: The served ensemble; its ``network`` is the Triton model the export writes.
    contract: ServedContract
    #: One line for ``medvision export KIND --help``.
    summary: str
    #: A fresh network for the checkpoint's typed metadata (``training.engine.meta``).
    build_network: Callable[[Any], nn.Module]
    #: The ONNX / Triton inputs and outputs of the network for a checkpoint's metadata;
    #: the first input is the one parity and TensorRT profiles feed. Every axis but the
    #: leading batch axis is fixed.
    network_io: Callable[[Meta], NetworkIO]
    #: One decision threshold per label (or region) of the post-processing.
    thresholds: Callable[[Meta], list[float]]
    #: The model-specific ``parameters`` of the network's ``config.pbtxt`` (export adds the
    #: provenance: version, training run, thresholds, export time).
    network_parameters: Callable[[Meta], dict[str, str]]
    #: The ``parameters`` of the pre/post (and further) Python models, by model name, for a
    #: checkpoint's metadata and the batch size of their calls into the network.
    pre_post_parameters: Callable[[Meta, int], dict[str, dict[str, str]]]
    #: The metadata :attr:`pre_post_parameters` reads, recovered from the parameters of an
    #: exported network's ``config.pbtxt`` (thresholds are added by the caller).
    meta_from_parameters: Callable[[Mapping[str, str]], dict[str, Any]]
    #: True when the network returns logits and class activation maps (``CAMS``) from one
    #: graph (exported through ``CamWrapper``; the traced CAM size is recorded).
    cams: bool = False
    #: A DICOM file preprocessed the training way into one network input, for parity on
    #: real inputs (``--parity-dicom``); None when the model takes no single DICOM file.
    real_input: Callable[[Path, Meta], npt.NDArray[Any]] | None = None
    #: Feature dicts of validation DICOM files run through the network, the version's drift
    #: reference (``--drift-dicom``); None when the model has none.
    drift_samples: Callable[[nn.Module, Meta, Sequence[Path]], list[dict[str, float]]] | None = None

    @property
    def kind(self) -> ModelKind:
        """The served model's name: ``medvision export KIND``."""
        return self.contract.name

    @property
    def network(self) -> str:
        """The Triton network model the export writes, e.g. ``cxr_net``."""
        return self.contract.network


def _join(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def _label_thresholds(meta: Meta) -> list[float]:
    found = meta.get("thresholds")
    return [float(t) for t in found] if found else [0.5] * len(meta["labels"])


def _cam_size(meta: Meta, num_blocks: Callable[[Meta], int]) -> tuple[int, int]:
    """Feature map (CAM) height and width of a DenseNet-style network for its input size:
    ``meta["cam_size"]`` when export recorded the traced size, else computed from the
    network's number of dense blocks."""
    if "cam_size" in meta:
        height, width = (int(v) for v in meta["cam_size"])
        return height, width
    from training.networks.cxr import feature_map_size

    size = int(meta["input_size"])
    return feature_map_size(size, size, num_blocks(meta))


def _classifier_io(
    meta: Meta, name: str, channels: int, num_blocks: Callable[[Meta], int]
) -> NetworkIO:
    """A per-image classifier with CAMs: ``name`` [C, S, S] → ``LOGITS`` [L], ``CAMS``."""
    size = int(meta["input_size"])
    n_labels = len(meta["labels"])
    cam_h, cam_w = _cam_size(meta, num_blocks)
    return (
        [NetworkTensor(name, (channels, size, size))],
        [NetworkTensor("LOGITS", (n_labels,)), NetworkTensor("CAMS", (n_labels, cam_h, cam_w))],
    )


def _classifier_parameters(meta: Meta, normalisation: str, **specific: str) -> dict[str, str]:
    """A classifier network's parameters: labels, input size, what is specific to the
    model, how inputs are normalised and how the thresholds were chosen."""
    return {
        "labels": _join(meta["labels"]),
        "input_size": str(int(meta["input_size"])),
        **specific,
        "normalisation": normalisation,
        "threshold_method": str(meta.get("threshold_method") or "default 0.5"),
    }


def _classifier_postprocess(meta: Meta) -> dict[str, str]:
    return {
        "labels": _join(meta["labels"]),
        "thresholds": _join(_label_thresholds(meta)),
        "input_size": str(int(meta["input_size"])),
    }


def _classifier_meta(parameters: Mapping[str, str]) -> dict[str, Any]:
    return {
        "labels": parameters["labels"].split(","),
        "input_size": int(parameters["input_size"]),
    }


# cxr: IMAGE FP32 [1, S, S] → LOGITS FP32 [14], CAMS FP32 [14, h, w]


def _cxr_network(meta: CxrMeta) -> nn.Module:
    from training.networks.cxr import build_cxr_net

    return build_cxr_net(meta.preset)  # type: ignore[arg-type]


def _cxr_blocks(meta: Meta) -> int:
    from training.networks.cxr import preset

    return len(preset(meta["preset"])["block_config"])


def _cxr_io(meta: Meta) -> NetworkIO:
    return _classifier_io(meta, "IMAGE", 1, _cxr_blocks)


def _cxr_zscore(meta: Meta) -> dict[str, str]:
    return {"mean": repr(float(meta["mean"])), "std": repr(float(meta["std"]))}


def _cxr_parameters(meta: Meta) -> dict[str, str]:
    return _classifier_parameters(meta, CXR_NORMALISATION, **_cxr_zscore(meta))


def _cxr_pre_post(meta: Meta, batch_size: int) -> dict[str, dict[str, str]]:
    size = {"input_size": str(int(meta["input_size"]))}
    return {
        CXR.preprocess: {**size, **_cxr_zscore(meta)},
        CXR.postprocess: _classifier_postprocess(meta),
    }


def _cxr_meta(parameters: Mapping[str, str]) -> dict[str, Any]:
    zscore = {"mean": float(parameters["mean"]), "std": float(parameters["std"])}
    return {**_classifier_meta(parameters), **zscore}


def _cxr_real_input(path: Path, meta: Meta) -> npt.NDArray[Any]:
    from export.parity import cxr_input_from_dicom

    return cxr_input_from_dicom(path, meta)


def _cxr_drift_samples(
    model: nn.Module, meta: Meta, paths: Sequence[Path]
) -> list[dict[str, float]]:
    from export.drift_reference import cxr_validation_samples

    return cxr_validation_samples(model, meta, paths)


# brats: PATCH FP32 [4, R, R, R] → LOGITS FP32 [3, R, R, R]


def _brats_network(meta: BratsMeta) -> nn.Module:
    from training.networks.brats import build_brats_net

    return build_brats_net(preset=meta.preset)  # type: ignore[arg-type]


def _brats_io(meta: Meta) -> NetworkIO:
    roi = int(meta["roi"])
    n_regions = len(meta["regions"])
    return (
        [NetworkTensor("PATCH", (4, roi, roi, roi))],
        [NetworkTensor("LOGITS", (n_regions, roi, roi, roi))],
    )


def _brats_thresholds(meta: Meta) -> list[float]:
    return [float(meta.get("threshold", 0.5))] * len(meta["regions"])


def _brats_parameters(meta: Meta) -> dict[str, str]:
    return {
        "regions": _join(meta["regions"]),
        "roi": str(int(meta["roi"])),
        "threshold": repr(float(meta.get("threshold", 0.5))),
        "normalisation": str(meta.get("normalisation", "")),
    }


def _brats_pre_post(meta: Meta, batch_size: int) -> dict[str, dict[str, str]]:
    (segment,) = BRATS.steps
    return {
        segment: {
            "roi": str(int(meta["roi"])),
            "overlap": str(BRATS_OVERLAP),
            "sw_batch_size": str(batch_size),
        },
        BRATS.postprocess: {"threshold": repr(float(meta.get("threshold", 0.5)))},
    }


def _brats_meta(parameters: Mapping[str, str]) -> dict[str, Any]:
    return {
        "regions": parameters["regions"].split(","),
        "roi": int(parameters["roi"]),
        "threshold": float(parameters["threshold"]),
    }


# ct_head: SLICES FP32 [C, S, S] (one windowed slice, C = (2k + 1) * windows) →
# LOGITS FP32 [6], CAMS FP32 [6, h, w]


def _ct_head_network(meta: CtHeadMeta) -> nn.Module:
    from training.networks.ct_head import build_ct_head_net

    return build_ct_head_net(meta.preset, meta.context)  # type: ignore[arg-type]


def _ct_head_blocks(meta: Meta) -> int:
    from training.networks.ct_head import build_ct_head_net

    return build_ct_head_net(meta["preset"], int(meta["context"])).num_blocks


def _ct_head_io(meta: Meta) -> NetworkIO:
    channels = channels_per_slice(int(meta["context"]), len(meta["windows"]))
    return _classifier_io(meta, "SLICES", channels, _ct_head_blocks)


def _ct_head_slices(meta: Meta) -> dict[str, str]:
    """How a slice becomes the network input: neighbours each side and HU windows."""
    windows = tuple((str(n), float(c), float(w)) for n, c, w in meta["windows"])
    return {"context_slices": str(int(meta["context"])), "windows": format_windows(windows)}


def _ct_head_parameters(meta: Meta) -> dict[str, str]:
    aggregation = "study probability = max over slices"
    return _classifier_parameters(
        meta, CT_HEAD_NORMALISATION, **_ct_head_slices(meta), aggregation=aggregation
    )


def _ct_head_pre_post(meta: Meta, batch_size: int) -> dict[str, dict[str, str]]:
    (classify,) = CT_HEAD.steps
    size = {"input_size": str(int(meta["input_size"]))}
    return {
        CT_HEAD.preprocess: {**size, **_ct_head_slices(meta)},
        classify: {"batch_size": str(batch_size)},
        CT_HEAD.postprocess: _classifier_postprocess(meta),
    }


def _ct_head_meta(parameters: Mapping[str, str]) -> dict[str, Any]:
    slices = {
        "context": int(parameters["context_slices"]),
        "windows": parse_windows(parameters["windows"]),
    }
    return {**_classifier_meta(parameters), **slices}


#: Every exportable model by served name, in the order of ``SERVED_CONTRACTS``.
EXPORT_SPECS: dict[ModelKind, ExportSpec] = {
    spec.kind: spec
    for spec in (
        ExportSpec(
            contract=CXR,
            summary="Export the chest X-ray classifier as cxr_net (IMAGE → LOGITS, CAMS).",
            build_network=_cxr_network,
            network_io=_cxr_io,
            thresholds=_label_thresholds,
            network_parameters=_cxr_parameters,
            pre_post_parameters=_cxr_pre_post,
            meta_from_parameters=_cxr_meta,
            cams=True,
            real_input=_cxr_real_input,
            drift_samples=_cxr_drift_samples,
        ),
        ExportSpec(
            contract=BRATS,
            summary="Export the BraTS segmentation network as brats_net (PATCH → LOGITS).",
            build_network=_brats_network,
            network_io=_brats_io,
            thresholds=_brats_thresholds,
            network_parameters=_brats_parameters,
            pre_post_parameters=_brats_pre_post,
            meta_from_parameters=_brats_meta,
        ),
        ExportSpec(
            contract=CT_HEAD,
            summary=(
                "Export the head CT haemorrhage network as ct_head_net (SLICES → LOGITS, CAMS)."
            ),
            build_network=_ct_head_network,
            network_io=_ct_head_io,
            thresholds=_label_thresholds,
            network_parameters=_ct_head_parameters,
            pre_post_parameters=_ct_head_pre_post,
            meta_from_parameters=_ct_head_meta,
            cams=True,
        ),
    )
}


def export_spec(kind: str) -> ExportSpec:
    """The spec of ``kind``; ``ValueError`` naming the known kinds for any other name."""
    spec = EXPORT_SPECS.get(kind)
    if spec is None:
        known = ", ".join(EXPORT_SPECS)
        raise ValueError(f"unknown model kind {kind!r}; expected one of {known}")
    return spec
