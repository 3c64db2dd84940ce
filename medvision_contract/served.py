"""The served models' Triton contracts: one entry per ensemble, read by every part.

Each entry names the ensemble the control plane calls, the Triton models it is made of and
the tensors it takes and returns (names, Triton data types without the ``TYPE_`` prefix,
dims with -1 for a variable size), plus its label or region order. ``model_repository/``
must agree (``tests/model_repository/test_served_contracts.py`` compares every
``config.pbtxt``); the control plane's model registry (``control/served``) and the export
specs (``export/specs.py``) refer to these entries instead of spelling names again.
"""

from __future__ import annotations

from dataclasses import dataclass

from medvision_contract.labels import BRATS_REGIONS, CT_HEAD_LABELS, CXR_LABELS


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of an ensemble."""

    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ServedContract:
    """What a served ensemble is made of and what it takes and returns."""

    #: The ensemble the control plane calls, e.g. ``cxr``.
    name: str
    #: The network model (``medvision export`` writes it); provenance is read from it.
    network: str
    #: The Python models before and after the network (their config parameters hold the
    #: labels, thresholds and normalisation the export wrote).
    preprocess: str
    postprocess: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: Label (classification) or region (segmentation) order of the outputs.
    labels: tuple[str, ...]
    #: Further Triton models of the ensemble (e.g. one calling the network through BLS).
    steps: tuple[str, ...] = ()

    @property
    def triton_models(self) -> tuple[str, ...]:
        """Every Triton model the ensemble needs loaded, the ensemble first."""
        return (self.name, self.preprocess, *self.steps, self.network, self.postprocess)

    def output(self, name: str) -> TensorSpec:
        """The output tensor ``name``; ``KeyError`` when the ensemble has none."""
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"{self.name} has no output {name!r}")


CXR = ServedContract(
    name="cxr",
    network="cxr_net",
    preprocess="cxr_preprocess",
    postprocess="cxr_postprocess",
    inputs=(TensorSpec("PIXELS", "UINT16", (-1, -1)), TensorSpec("INVERT", "BOOL", (1,))),
    outputs=(
        TensorSpec("PROBABILITIES", "FP32", (len(CXR_LABELS),)),
        TensorSpec("POSITIVE", "BOOL", (len(CXR_LABELS),)),
        TensorSpec("CAM", "UINT8", (len(CXR_LABELS), -1, -1)),
    ),
    labels=CXR_LABELS,
)

BRATS = ServedContract(
    name="brats",
    network="brats_net",
    preprocess="brats_preprocess",
    postprocess="brats_postprocess",
    steps=("brats_segment",),
    inputs=(TensorSpec("VOLUME", "FP32", (4, -1, -1, -1)), TensorSpec("SPACING_MM", "FP32", (3,))),
    outputs=(
        TensorSpec("LABELS", "UINT8", (-1, -1, -1)),
        TensorSpec("REGION_ML", "FP32", (len(BRATS_REGIONS),)),
    ),
    labels=BRATS_REGIONS,
)

CT_HEAD = ServedContract(
    name="ct_head",
    network="ct_head_net",
    preprocess="ct_head_preprocess",
    postprocess="ct_head_postprocess",
    steps=("ct_head_classify",),
    inputs=(TensorSpec("VOLUME", "INT16", (-1, -1, -1)), TensorSpec("SPACING_MM", "FP32", (3,))),
    outputs=(
        TensorSpec("SLICE_PROBABILITIES", "FP32", (-1, len(CT_HEAD_LABELS))),
        TensorSpec("PROBABILITIES", "FP32", (len(CT_HEAD_LABELS),)),
        TensorSpec("POSITIVE", "BOOL", (len(CT_HEAD_LABELS),)),
        TensorSpec("HEATMAP", "UINT8", (-1, -1, -1)),
    ),
    labels=CT_HEAD_LABELS,
)

#: Every served ensemble by name, in routing order.
SERVED_CONTRACTS: dict[str, ServedContract] = {c.name: c for c in (CXR, BRATS, CT_HEAD)}
