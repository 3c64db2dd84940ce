"""What Triton is serving: model versions and provenance, including the synthetic-demo flag."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import Role
from control.domain.auth.guards import ANY_ROLE, requires
from control.errors import NotFoundError

SERVED_NETWORKS = ("cxr_net", "brats_net")
SYNTHETIC_WARNING = (
    "Synthetic demo model trained on synthetic data: not a clinical model; "
    "its outputs mean nothing medically."
)


class ServedModel(msgspec.Struct):
    name: str
    ready: bool
    model_version: str | None
    training_run_id: str | None
    synthetic: bool
    warning: str | None
    parameters: dict[str, str]


class ModelController(Controller):
    path = "/api/models"
    tags = ["models"]

    @get("/", operation_id="listModels", guards=[requires(*ANY_ROLE)])
    async def list_models(self, state: State) -> list[ServedModel]:
        """The networks behind the ``cxr`` and ``brats`` ensembles, read from Triton's model
        configs (never assumed); 503 ``inference_unavailable`` when Triton cannot be reached."""
        from control.triton.client import InferenceUnavailableError, TritonClient

        served = []
        async with TritonClient(state.settings.triton_url, timeout_s=5.0, retries=1) as client:
            if not await client.is_ready():
                raise InferenceUnavailableError(
                    f"Triton at {state.settings.triton_url} is not reachable or not ready",
                    detail={"url": state.settings.triton_url},
                )
            for name in SERVED_NETWORKS:
                ready = await client.model_ready(name)
                parameters = await client.model_parameters(name) if ready else {}
                synthetic = parameters.get("synthetic_data") == "true"
                served.append(
                    ServedModel(
                        name=name,
                        ready=ready,
                        model_version=parameters.get("model_version"),
                        training_run_id=parameters.get("training_run_id") or None,
                        synthetic=synthetic,
                        warning=SYNTHETIC_WARNING if synthetic else None,
                        parameters=parameters,
                    )
                )
        return served


class FeatureDriftOut(msgspec.Struct):
    feature: str
    psi: float
    ks: float
    n_window: int
    n_reference: int
    drifted: bool


class VersionDriftOut(msgspec.Struct):
    model_version: str
    status: str
    n: int
    features: list[FeatureDriftOut]


class ModelDriftOut(msgspec.Struct):
    model: str
    window: int
    min_samples: int
    psi_threshold: float
    versions: list[VersionDriftOut]


class ModelDriftController(Controller):
    """Drift of a served model against its validation reference (docs/monitoring.md)."""

    path = "/api/models"
    tags = ["models"]

    @get(
        "/{name:str}/drift",
        operation_id="getModelDrift",
        guards=[requires(Role.ADMIN, Role.MLOPS)],
    )
    async def drift(self, name: str, db_session: AsyncSession, state: State) -> ModelDriftOut:
        """PSI and KS statistic per output and input feature for each version of ``name``
        (``cxr``, ``brats``) that has findings: its last ``MEDVISION_DRIFT_WINDOW`` findings
        against the version's validation reference; a version without a reference or with
        too few findings says so in ``status``. 404 ``model_not_found`` for another name."""
        from control.observability.drift import MODEL_NETWORKS, drift_reports

        if name not in MODEL_NETWORKS:
            raise NotFoundError(
                f"no served model {name!r}",
                code="model_not_found",
                detail={"models": sorted(MODEL_NETWORKS)},
            )
        settings = state.settings
        reports = await drift_reports(
            db_session,
            state.db_metrics.references,
            name,
            window=settings.drift_window,
            min_samples=settings.drift_min_samples,
            psi_threshold=settings.drift_psi_threshold,
        )
        return ModelDriftOut(
            model=name,
            window=settings.drift_window,
            min_samples=settings.drift_min_samples,
            psi_threshold=settings.drift_psi_threshold,
            versions=[
                VersionDriftOut(
                    model_version=report.model_version,
                    status=report.status,
                    n=report.n,
                    features=[
                        FeatureDriftOut(
                            feature=f.feature,
                            psi=f.psi,
                            ks=f.ks,
                            n_window=f.n_window,
                            n_reference=f.n_reference,
                            drifted=f.psi > settings.drift_psi_threshold,
                        )
                        for f in report.features
                    ],
                )
                for report in reports
            ],
        )
