"""Every served model has a complete export spec, and the spec agrees with its contract.

Adding a served model to ``medvision_contract.served`` without an entry in
``export.specs.EXPORT_SPECS`` fails here, and so does a spec whose tensors, parameters or
pre/post models do not match the contract and the committed model repository.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from export.cli import app
from export.specs import EXPORT_SPECS, ExportSpec, export_spec
from export.triton_config import config_parameters, network_config, parse_config
from medvision_contract.ct_windows import CT_HEAD_WINDOWS
from medvision_contract.served import SERVED_CONTRACTS

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"

#: A small checkpoint's metadata (plain form) per served model; a new model adds one.
TINY_METAS: dict[str, dict[str, Any]] = {
    "cxr": {
        "task": "cxr", "labels": list(SERVED_CONTRACTS["cxr"].labels), "preset": "tiny",
        "input_size": 64, "mean": 0.45, "std": 0.22, "cam_size": [2, 2],
        "thresholds": [0.25] * 14,
    },
    "brats": {
        "task": "brats", "regions": list(SERVED_CONTRACTS["brats"].labels), "preset": "tiny",
        "roi": 16, "threshold": 0.4, "normalisation": "brain z-score",
    },
    "ct_head": {
        "task": "ct_head", "labels": list(SERVED_CONTRACTS["ct_head"].labels), "preset": "tiny",
        "input_size": 32, "context": 1, "windows": [list(w) for w in CT_HEAD_WINDOWS],
        "cam_size": [4, 4],
    },
}  # fmt: skip
KINDS = sorted(SERVED_CONTRACTS)


def test_every_served_model_has_an_export_spec_and_nothing_else_does() -> None:
    assert list(EXPORT_SPECS) == list(SERVED_CONTRACTS)
    assert set(TINY_METAS) == set(SERVED_CONTRACTS), "add a tiny checkpoint meta above"


@pytest.mark.parametrize("kind", KINDS)
def test_spec_is_complete_and_names_its_contract(kind: str) -> None:
    spec = export_spec(kind)
    assert spec.contract is SERVED_CONTRACTS[kind]
    assert spec.kind == kind and spec.network == SERVED_CONTRACTS[kind].network
    for field in dataclasses.fields(ExportSpec):
        value = getattr(spec, field.name)
        if field.default is dataclasses.MISSING:
            assert value, f"{kind}: export spec field {field.name} is empty"
    assert spec.network in spec.summary


@pytest.mark.parametrize("kind", KINDS)
def test_network_io_matches_the_cam_flag(kind: str) -> None:
    spec = export_spec(kind)
    inputs, outputs = spec.network_io(TINY_METAS[kind])
    assert len(inputs) >= 1 and all(t.name and t.dims for t in inputs)
    assert outputs[0].name == "LOGITS"
    assert ("CAMS" in [t.name for t in outputs]) == spec.cams


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_carry_the_contract_labels_and_thresholds(kind: str) -> None:
    spec = export_spec(kind)
    meta = TINY_METAS[kind]
    labels = spec.contract.labels
    assert len(spec.thresholds(meta)) == len(labels)
    parameters = spec.network_parameters(meta)
    assert parameters.get("labels", parameters.get("regions")) == ",".join(labels)
    assert parameters["normalisation"]


@pytest.mark.parametrize("kind", KINDS)
def test_pre_post_parameters_go_to_the_ensembles_python_models(kind: str) -> None:
    spec = export_spec(kind)
    contract = spec.contract
    models = spec.pre_post_parameters(TINY_METAS[kind], 4)
    assert contract.postprocess in models
    assert set(models) <= {contract.preprocess, contract.postprocess, *contract.steps}
    for model in models:
        assert (REPOSITORY / model / "config.pbtxt").is_file(), f"no Triton folder {model}"


@pytest.mark.parametrize("kind", KINDS)
def test_pre_post_parameters_can_be_recovered_from_the_network_config(kind: str) -> None:
    """What ``sync_pre_post_configs`` relies on: the network config holds all they need."""
    spec = export_spec(kind)
    meta = TINY_METAS[kind]
    text = network_config(
        kind, meta, format="python-onnx", version=1, gpu=False, run_id=None,
        model_version_label="x",
    )  # fmt: skip
    parameters = config_parameters(parse_config(text))
    recovered = {
        "thresholds": [float(t) for t in parameters["thresholds"].split(",")],
        **spec.meta_from_parameters(parameters),
    }
    assert spec.pre_post_parameters(recovered, 4) == spec.pre_post_parameters(meta, 4)


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="cxr, brats, ct_head"):
        export_spec("mammo")


def test_export_cli_has_a_command_per_spec_and_dicom_options_where_supported() -> None:
    runner = CliRunner()
    for spec in EXPORT_SPECS.values():
        result = runner.invoke(app, [spec.kind, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert ("--parity-dicom" in result.output) == (spec.real_input is not None)
        assert ("--drift-dicom" in result.output) == (spec.drift_samples is not None)
