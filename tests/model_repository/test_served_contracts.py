"""The Triton contracts in ``medvision_contract.served`` are what ``model_repository/`` serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.triton_config import parse_config
from medvision_contract.served import SERVED_CONTRACTS, ServedContract

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


@pytest.mark.parametrize("contract", SERVED_CONTRACTS.values(), ids=list(SERVED_CONTRACTS))
def test_the_ensemble_config_matches_its_contract(contract: ServedContract):
    config = parse_config((REPOSITORY / contract.name / "config.pbtxt").read_text())
    assert config.platform == "ensemble"

    def spelled(entries) -> list[tuple[str, str, tuple[int, ...]]]:
        type_names = type(config.input[0]).DESCRIPTOR.fields_by_name["data_type"].enum_type
        return [
            (e.name, type_names.values_by_number[e.data_type].name.removeprefix("TYPE_"),
             tuple(e.dims))
            for e in entries
        ]  # fmt: skip

    assert spelled(config.input) == [(t.name, t.dtype, t.dims) for t in contract.inputs]
    assert spelled(config.output) == [(t.name, t.dtype, t.dims) for t in contract.outputs]
    steps = [step.model_name for step in config.ensemble_scheduling.step]
    assert steps[0] == contract.preprocess and steps[-1] == contract.postprocess
    called = set(steps) | set(contract.steps) | {contract.network}
    assert set(contract.triton_models) == called | {contract.name}


@pytest.mark.parametrize("contract", SERVED_CONTRACTS.values(), ids=list(SERVED_CONTRACTS))
def test_the_published_labels_are_the_contract_order(contract: ServedContract):
    config = parse_config((REPOSITORY / contract.postprocess / "config.pbtxt").read_text())
    if "labels" in config.parameters:
        labels = config.parameters["labels"].string_value.split(",")
        assert tuple(labels) == contract.labels
