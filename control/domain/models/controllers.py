"""What Triton is serving: model versions and provenance, including the synthetic-demo flag."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.datastructures import State

from control.domain.auth.guards import ANY_ROLE, requires

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
