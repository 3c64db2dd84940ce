"""Which Triton pipeline a study goes to, decided from what was stored for it.

Chest radiographs (CR/DX of the chest) go to ``cxr``; an MR brain study with all four BraTS
sequences, or a 4-channel NIfTI volume, goes to ``brats``; anything else gets no model and
is shown on the worklist as such, with the reason.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from control.config import Settings
from control.db.models import Instance, Series, Study
from control.domain.studies.prepare import NIFTI_SOP_CLASS
from control.imaging.volumes import BRATS_CHANNELS

CXR = "cxr"
BRATS = "brats"
#: The subject of a BraTS finding: the case's one MRI volume.
VOLUME_SUBJECT = "volume"


@dataclass(frozen=True)
class RoutingRules:
    """Modalities and body parts accepted by each pipeline (upper case; "" = not recorded)."""

    chest_modalities: frozenset[str] = frozenset({"CR", "DX"})
    chest_body_parts: frozenset[str] = frozenset({"CHEST", "THORAX", "LUNG", ""})
    brain_body_parts: frozenset[str] = frozenset({"BRAIN", "HEAD", "SKULL", ""})

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingRules:
        return cls(
            chest_modalities=frozenset(m.upper() for m in settings.route_chest_modalities),
            chest_body_parts=frozenset(b.upper() for b in settings.route_chest_body_parts),
            brain_body_parts=frozenset(b.upper() for b in settings.route_brain_body_parts),
        )


@dataclass
class Route:
    """The pipeline for a study (None: no model) and what it will read.

    ``instances`` are the chest radiographs for ``cxr``; ``channels`` maps each BraTS
    channel to its MR series for ``brats``; ``volume`` is a 4-channel NIfTI instance.
    """

    pipeline: str | None
    reason: str
    instances: list[Instance] = field(default_factory=list)
    channels: dict[str, Series] = field(default_factory=dict)
    volume: Instance | None = None

    @property
    def subjects(self) -> list[str]:
        """What the pipeline writes one finding for: each radiograph (its instance id) for
        ``cxr``, the volume for ``brats``, nothing without a pipeline."""
        if self.pipeline == CXR:
            return [str(instance.id) for instance in self.instances]
        return [VOLUME_SUBJECT] if self.pipeline == BRATS else []

    def without(self, inferred: Collection[str]) -> Route:
        """This route less the subjects that already have findings (``pipeline`` None when
        nothing is left to infer)."""
        if all(subject in inferred for subject in self.subjects):
            return Route(None, "every image of the study already has a finding")
        if self.pipeline == CXR:
            return replace(self, instances=[i for i in self.instances if str(i.id) not in inferred])
        return self


def _body_part(series: Series) -> str:
    return (series.body_part or "").strip().upper()


def route_study(study: Study, rules: RoutingRules) -> Route:
    """The route for ``study``; never raises: what cannot be routed gets ``pipeline=None``."""
    chest = [
        instance
        for series in study.series
        if series.modality.upper() in rules.chest_modalities
        and _body_part(series) in rules.chest_body_parts
        for instance in series.instances
    ]
    if chest:
        return Route(CXR, "chest radiograph", instances=chest)
    brain = [
        series
        for series in study.series
        if series.modality.upper() == "MR" and _body_part(series) in rules.brain_body_parts
    ]
    for series in brain:
        for instance in series.instances:
            if instance.sop_class_uid == NIFTI_SOP_CLASS:
                return Route(BRATS, "4-channel MRI volume", volume=instance)
    channels: dict[str, Series] = {}
    for series in brain:
        kind = series.sequence_type
        if kind in BRATS_CHANNELS and series.instances:
            current = channels.get(kind)
            if current is None or len(series.instances) > len(current.instances):
                channels[kind] = series
    if brain:
        missing = [kind for kind in BRATS_CHANNELS if kind not in channels]
        if not missing:
            return Route(BRATS, "MR brain study with T1, T1ce, T2 and FLAIR", channels=channels)
        return Route(None, f"MR brain study without {', '.join(missing)}")
    modalities = sorted({series.modality for series in study.series}) or ["none"]
    return Route(None, f"no model for {'/'.join(modalities)} studies")
