"""The served models, one entry each, and the lookups the rest of the control plane uses.

To add a model: describe it in a module of this package (see ``ct_head.py``) and add its
entry to :data:`SERVED_MODELS`; ``tests/control/served/test_registry.py`` fails until every
piece (Triton contract, routing rule, pipeline, viewer views, result plan, export spec,
repository folders) is there.
"""

from __future__ import annotations

from control.db.models import Study
from control.errors import NotFoundError
from control.served.base import Route, RoutingRules, ServedModel
from control.served.brats import BRATS_MODEL
from control.served.ct_head import CT_HEAD_MODEL
from control.served.cxr import CXR_MODEL

#: Every served model by name, in routing order: the first whose rule claims a study reads it.
SERVED_MODELS: dict[str, ServedModel] = {
    model.name: model for model in (CXR_MODEL, BRATS_MODEL, CT_HEAD_MODEL)
}


def served_model(name: str | None) -> ServedModel:
    """The model called ``name``; 404 ``model_not_found`` for a name no longer served."""
    model = SERVED_MODELS.get(name or "")
    if model is None:
        raise NotFoundError(f"no served model {name!r}", code="model_not_found")
    return model


def route_study(study: Study, rules: RoutingRules) -> Route:
    """The route for ``study``; never raises: what no model reads gets ``pipeline=None`` and
    the reason, shown on the worklist."""
    for model in SERVED_MODELS.values():
        route = model.route(study, rules)
        if route is not None:
            return route
    modalities = sorted({series.modality for series in study.series}) or ["none"]
    return Route(None, f"no model for {'/'.join(modalities)} studies")
