"""The served-model registry: every registered model is whole, and nothing else names models.

A model engineer adding a model adds one entry to ``SERVED_MODELS``; these tests fail until
each piece exists: its Triton contract and repository folders, a routing rule that picks a
study made for it, a pipeline, viewer views the API serves, a result plan, an export spec,
and a study in :data:`STUDY_FOR` below showing what it reads.
"""

from __future__ import annotations

import ast
import inspect
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from control.app import create_app
from control.config import Settings
from control.db.models import Finding, FindingKind, Instance, Series, Study
from control.observability.collectors import PIPELINES
from control.observability.drift import MODEL_NETWORKS
from control.served.base import VOLUME_SUBJECT, RoutingRules, ServedModel, ViewerView
from control.served.registry import SERVED_MODELS, route_study, served_model
from export.specs import EXPORT_SPECS
from medvision_contract.served import SERVED_CONTRACTS
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parents[3]
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def _series(modality: str, body_part: str, count: int, sop_class: str, **kw: str) -> Series:
    instances = [
        Instance(
            id=uuid.uuid4(),
            sop_instance_uid=f"2.25.{uuid.uuid4().int}",
            sop_class_uid=sop_class,
            object_key="x",
            sha256="0" * 64,
            size_bytes=1,
        )
        for _ in range(count)
    ]
    return Series(
        id=uuid.uuid4(),
        series_uid=f"2.25.{uuid.uuid4().int}",
        modality=modality,
        body_part=body_part,
        instances=instances,
        **kw,
    )


def _study(*series: Series) -> Study:
    return Study(study_uid=f"2.25.{uuid.uuid4().int}", pseudo_patient_id="p", series=list(series))


#: A study each model reads (the piece a new model must add here, next to its entry).
STUDY_FOR: dict[str, Callable[[], Study]] = {
    "cxr": lambda: _study(_series("DX", "CHEST", 2, DX_IMAGE)),
    "brats": lambda: _study(
        *(
            _series("MR", "BRAIN", 3, MR_IMAGE, sequence_type=kind)
            for kind in ("T1", "T1ce", "T2", "FLAIR")
        )
    ),
    "ct_head": lambda: _study(_series("CT", "HEAD", 12, CT_IMAGE)),
}

#: The API paths that serve each viewer view.
VIEW_PATHS = {
    ViewerView.CAM: "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/cam/{label:str}",
    ViewerView.SEGMENTATION: "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/volume",
    ViewerView.SLICE_HEATMAP: (
        "/api/cases/{case_id:uuid}/findings/{finding_id:uuid}/per-slice/{index:int}/heatmap"
    ),
}

MODELS = pytest.mark.parametrize("model", list(SERVED_MODELS.values()), ids=list(SERVED_MODELS))


def test_every_contract_is_served_and_every_served_model_has_a_contract():
    assert list(SERVED_MODELS) == list(SERVED_CONTRACTS)
    for name, model in SERVED_MODELS.items():
        assert model.contract is SERVED_CONTRACTS[name]


@MODELS
def test_a_served_model_is_whole(model: ServedModel):
    assert model.name in STUDY_FOR, f"add a study that {model.name} reads to STUDY_FOR"
    assert model.labels and len(set(model.labels)) == len(model.labels)
    assert inspect.iscoroutinefunction(model.run)
    assert model.viewer, f"{model.name} names no viewer view"
    assert model.export_kind in EXPORT_SPECS, "no `medvision export` spec"
    assert EXPORT_SPECS[model.export_kind].contract is model.contract
    assert model.settle_s(Settings()) >= 0
    for triton_model in model.contract.triton_models:
        if triton_model != model.contract.network:  # the network is written by the export
            config = ROOT / "model_repository" / triton_model / "config.pbtxt"
            assert config.is_file(), f"{triton_model} has no folder in model_repository/"


@MODELS
def test_a_served_model_routes_the_study_made_for_it(model: ServedModel):
    route = route_study(STUDY_FOR[model.name](), RoutingRules())
    assert route.pipeline == model.name, route.reason
    assert route.subjects
    assert model.route(_study(_series("OT", "ARM", 1, DX_IMAGE)), RoutingRules()) is None


@MODELS
def test_a_served_model_plans_its_result_objects(model: ServedModel):
    finding = Finding(
        id=uuid.uuid4(),
        kind=model.finding_kind,
        model_name=model.name,
        instance_id=uuid.uuid4(),
        subject=VOLUME_SUBJECT,
        decisions=[],
    )
    for preliminary in (False, True):
        planned = model.results(finding, preliminary)
        assert all(isinstance(name, str) and reason is None for name, reason in planned)


def test_every_viewer_view_is_served_by_the_api(tmp_path):
    app = create_app(
        Settings(data_dir=tmp_path, secret_key=SECRET, worker_enabled=False, triton_required=False)
    )
    paths = {route.path for route in app.routes}
    for view in ViewerView:
        assert VIEW_PATHS[view] in paths, view


def test_metrics_and_drift_cover_every_served_model():
    assert set(PIPELINES) == set(SERVED_MODELS)
    assert {name: m.contract.network for name, m in SERVED_MODELS.items()} == MODEL_NETWORKS


def test_an_unknown_model_name_is_a_clear_error():
    with pytest.raises(Exception) as raised:
        served_model("retired_model")
    assert getattr(raised.value, "code", None) == "model_not_found"


def test_the_first_model_whose_rule_claims_a_study_reads_it():
    """A chest radiograph beside a head CT goes to ``cxr`` (registry order), and a head CT
    of a body part outside the configured set gets no model, with the reason."""
    both = _study(_series("CT", "HEAD", 3, CT_IMAGE), _series("DX", "CHEST", 1, DX_IMAGE))
    assert route_study(both, RoutingRules()).pipeline == "cxr"
    spine = route_study(_study(_series("CT", "SPINE", 3, CT_IMAGE)), RoutingRules())
    assert (spine.pipeline, spine.reason) == (None, "no model for CT studies")


def test_no_model_name_is_spelt_outside_the_registry():
    """Outside ``control/served`` the control plane asks the registry, never ``== "cxr"``."""
    names = set(SERVED_MODELS) | {m.contract.network for m in SERVED_MODELS.values()}
    offenders = []
    for path in (ROOT / "control").rglob("*.py"):
        if "served" in path.parts or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    if isinstance(side, ast.Constant) and side.value in names:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Dict):
                for key in node.keys:
                    if isinstance(key, ast.Constant) and key.value in names:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_kind_of_a_finding_is_one_its_model_declares():
    kinds = {model.finding_kind for model in SERVED_MODELS.values()}
    assert kinds == set(FindingKind)
