"""What every served model shares: the description the registry holds, routes, finding drafts.

A served model is one Triton ensemble the control plane calls. Its :class:`ServedModel`
says which studies it reads (its routing rule), how a case's stored images become its
Triton inputs and its outputs become findings (its pipeline), what the viewer API can render
from those findings and which result objects go back to the PACS. The registry
(:mod:`control.served.registry`) holds one per model; nothing else in the control plane
branches on a model's name.
"""

from __future__ import annotations

import enum
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from control.config import Settings
from control.db.models import Case, Finding, FindingKind, Instance, Series, Study
from control.storage import ObjectStore
from control.triton.client import TritonClient
from medvision_contract.cams import longest_side_shape
from medvision_contract.served import ServedContract

T = TypeVar("T")

#: The subject of a finding about a whole volume (a BraTS study, a head CT series).
VOLUME_SUBJECT = "volume"


class ViewerView(enum.StrEnum):
    """What the viewer API can render from a model's findings (docs: README, Viewer API)."""

    #: Label heat maps over a radiograph (``/findings/{id}/cam/{label}``, ``cam-map``).
    CAM = "cam"
    #: Label-map slices and the label volume of a segmentation (``/segmentation/...``).
    SEGMENTATION = "segmentation"
    #: Per-slice probabilities and heat maps of a series (``/findings/{id}/per-slice...``).
    SLICE_HEATMAP = "slice_heatmap"


@dataclass(frozen=True)
class RoutingRules:
    """Modalities and body parts each model accepts (upper case; "" = not recorded)."""

    chest_modalities: frozenset[str] = frozenset({"CR", "DX"})
    chest_body_parts: frozenset[str] = frozenset({"CHEST", "THORAX", "LUNG", ""})
    brain_body_parts: frozenset[str] = frozenset({"BRAIN", "HEAD", "SKULL", ""})
    ct_head_body_parts: frozenset[str] = frozenset({"HEAD", "BRAIN"})

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingRules:
        def upper(values: Collection[str]) -> frozenset[str]:
            return frozenset(value.upper() for value in values)

        return cls(
            chest_modalities=upper(settings.route_chest_modalities),
            chest_body_parts=upper(settings.route_chest_body_parts),
            brain_body_parts=upper(settings.route_brain_body_parts),
            ct_head_body_parts=upper(settings.route_ct_head_body_parts),
        )


def body_part(series: Series) -> str:
    """The series' BodyPartExamined, upper case, "" when not recorded."""
    return (series.body_part or "").strip().upper()


@dataclass
class Route:
    """The model for a study (``pipeline`` None: no model) and what it will read.

    ``instances`` are the images the model reads one finding each from (chest radiographs)
    or the slices of the one series it reads (head CT); ``channels`` maps each MRI channel
    to its series and ``volume`` is a 4-channel NIfTI instance (BraTS). ``subjects`` are
    what the model writes one finding for.
    """

    pipeline: str | None
    reason: str
    instances: list[Instance] = field(default_factory=list)
    channels: dict[str, Series] = field(default_factory=dict)
    volume: Instance | None = None
    subjects: list[str] = field(default_factory=list)
    #: Subjects are the instances themselves (one finding per image): a follow-up job reads
    #: only the images without a finding.
    per_instance: bool = False

    def without(self, inferred: Collection[str]) -> Route:
        """This route less the subjects that already have findings (``pipeline`` None when
        nothing is left to infer)."""
        if all(subject in inferred for subject in self.subjects):
            return Route(None, "every image of the study already has a finding")
        if self.per_instance:
            left = [i for i in self.instances if str(i.id) not in inferred]
            return replace(self, instances=left, subjects=[str(i.id) for i in left])
        return self


@dataclass(frozen=True)
class ModelInfo:
    """What produced a finding, as Triton's model configuration says."""

    model_name: str
    network_name: str
    model_version: str
    training_run_id: str | None
    synthetic: bool


@dataclass
class FindingDraft:
    """A finding before it is written: everything but its database identity."""

    subject: str
    kind: FindingKind
    model: ModelInfo
    instance_id: uuid.UUID | None = None
    labels: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)
    #: The stored form of the model's typed artefacts (:mod:`control.served.artefacts`).
    artifacts: dict[str, str] = field(default_factory=dict)
    #: SHA-256 of the tensors sent to Triton.
    input_sha256: str = ""
    #: SHA-256 of the outputs as kept (result tensors and the SHA-256 of stored images).
    output_sha256: str = ""
    latency_ms: float = 0.0
    #: Simple input statistics for drift monitoring (export.drift_reference.input_statistics).
    input_stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """What a pipeline gets to run one job: the case, the route and the services."""

    case: Case
    job_id: uuid.UUID
    route: Route
    store: ObjectStore
    triton: TritonClient
    timeout_s: float

    @property
    def artifact_prefix(self) -> str:
        """Object keys of the job's artefacts start here: a rerun writes the same keys."""
        return f"derived/cases/{self.case.id}/jobs/{self.job_id}"


Pipeline = Callable[[Job], Awaitable[list[FindingDraft]]]
RoutingRule = Callable[[Study, RoutingRules], Route | None]
#: PACS result objects of a finding: ``(object name, skip reason or None)`` pairs.
ResultPlan = Callable[[Finding, bool], list[tuple[str, str | None]]]


@dataclass(frozen=True)
class ServedModel:
    """One served model, whole: the registry's entry.

    ``route`` returns None when a study is not this model's kind at all, or a route whose
    ``pipeline`` is None with the reason when it is but cannot be read yet (an MR brain
    study without its FLAIR). ``settle_s`` delays a new job so that the rest of a series
    arriving image by image is read with it (0: run at once).
    """

    contract: ServedContract
    finding_kind: FindingKind
    subject: Literal["image", "volume"]
    route: RoutingRule
    run: Pipeline
    viewer: frozenset[ViewerView]
    #: The result objects a finding of this model becomes (see control.results.jobs).
    results: ResultPlan
    #: The ``medvision export`` / ``medvision train`` kind of its network.
    export_kind: str
    settle_s: Callable[[Settings], float] = lambda _settings: 0.0

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.contract.labels


#: A heat map's longer side when the post-processing model does not publish ``cam_max_side``.
CAM_MAX_SIDE = 256


def heat_map_pixels(image_shape: tuple[int, ...], parameters: dict[str, str]) -> int:
    """Pixels of one heat map of an image of ``image_shape`` (rows, columns first): the
    image's aspect ratio, longer side the post-processing model's ``cam_max_side``."""
    max_side = int(parameters.get("cam_max_side") or CAM_MAX_SIDE)
    height, width = longest_side_shape((int(image_shape[0]), int(image_shape[1])), max_side)
    return height * width


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    """What ``call`` returns and the milliseconds awaiting it took."""
    started = time.perf_counter()
    result = await call
    return result, (time.perf_counter() - started) * 1000.0


def sha256_of(*arrays: npt.NDArray[Any]) -> str:
    """SHA-256 over the arrays' bytes in order (C order)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


async def model_info(triton: TritonClient, contract: ServedContract) -> ModelInfo:
    """The served network's provenance, read from its config.pbtxt ``parameters``."""
    parameters = await triton.model_parameters(contract.network)
    return ModelInfo(
        model_name=contract.name,
        network_name=contract.network,
        model_version=parameters.get("model_version") or "unversioned",
        training_run_id=parameters.get("training_run_id") or None,
        synthetic=parameters.get("synthetic_data") == "true",
    )
