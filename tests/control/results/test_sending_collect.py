"""What a signed-off case reports: the decision in force per label, the mask in force, the
objects planned per finding (pure: findings and decisions built in memory)."""

from __future__ import annotations

import uuid

import pytest

from control.db.models import Decision, DecisionAction, Finding, FindingKind
from control.results.collect import algorithm_of, label_readings, mask_in_force, region_ml_in_force
from control.results.jobs import planned_objects, result_uids

PROBABILITIES = {"Atelectasis": 0.12, "Effusion": 0.81, "Nodule": 0.64, "Mass": 0.05}
AI_POSITIVE = ["Effusion", "Nodule"]


def finding(kind: FindingKind = FindingKind.CLASSIFICATION, *decisions: Decision) -> Finding:
    return Finding(
        id=uuid.uuid4(),
        kind=kind,
        instance_id=uuid.uuid4() if kind == FindingKind.CLASSIFICATION else None,
        model_name="cxr" if kind == FindingKind.CLASSIFICATION else "brats",
        model_version="7",
        training_run_id="run-1",
        synthetic_model=False,
        labels=list(AI_POSITIVE) if kind == FindingKind.CLASSIFICATION else [],
        probabilities=dict(PROBABILITIES) if kind == FindingKind.CLASSIFICATION else {},
        volumes_ml={"enhancing_tumour": 1.0, "tumour_core": 2.0, "whole_tumour": 5.0},
        artifacts={"segmentation": "derived/ai.nii.gz"},
        decisions=list(decisions),
    )


def decision(sequence: int, action: DecisionAction, **fields: object) -> Decision:
    return Decision(id=uuid.uuid4(), sequence=sequence, action=action, username="rad1", **fields)


# (case, decision chain, expected final positives, expected decision word, expected reason)
READING_CASES = [
    ("no decision (preliminary)", [], {"Effusion", "Nodule"}, "none", None),
    ("accept keeps the AI's call", [decision(1, DecisionAction.ACCEPT)], {"Effusion", "Nodule"},
     "accepted", None),
    ("reject means absent", [decision(1, DecisionAction.REJECT, reason="artefact")], set(),
     "rejected", "artefact"),
    ("edit carries the final set",
     [decision(1, DecisionAction.EDIT, reason="missed", labels=["Atelectasis", "Effusion"])],
     {"Atelectasis", "Effusion"}, "edited", "missed"),
    ("the latest decision is in force",
     [decision(1, DecisionAction.REJECT, reason="x"),
      decision(2, DecisionAction.EDIT, reason="y", labels=["Mass"]),
      decision(3, DecisionAction.ACCEPT)],
     {"Effusion", "Nodule"}, "accepted", None),
    ("an edit to no labels", [decision(1, DecisionAction.EDIT, reason="normal", labels=[])],
     set(), "edited", "normal"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("chain", "final", "word", "reason"),
    [case[1:] for case in READING_CASES],
    ids=[case[0] for case in READING_CASES],
)
def test_readings_apply_the_decision_in_force(chain, final, word, reason):
    readings = label_readings(finding(FindingKind.CLASSIFICATION, *chain))

    assert [r.label for r in readings] == list(PROBABILITIES)  # every scored label, in order
    assert {r.label for r in readings if r.final_positive} == final
    assert {r.label for r in readings if r.ai_positive} == set(AI_POSITIVE)
    assert {r.decision for r in readings} == {word}
    assert {r.reason for r in readings} == {reason}
    assert {r.label: r.probability for r in readings} == PROBABILITIES


# (case, decision chain, expected key, expected source, expected volumes key)
MASK_CASES = [
    ("AI mask without an edit", [decision(1, DecisionAction.ACCEPT)], "derived/ai.nii.gz", "ai"),
    ("the edit's mask",
     [decision(1, DecisionAction.EDIT, reason="r", mask_key="derived/edit-1.nii.gz",
               mask_sha256="c" * 64, volumes_ml={"enhancing_tumour": 0.5})],
     "derived/edit-1.nii.gz", "edited"),
    ("the latest edit",
     [decision(1, DecisionAction.EDIT, reason="r", mask_key="derived/edit-1.nii.gz"),
      decision(2, DecisionAction.EDIT, reason="r", mask_key="derived/edit-2.nii.gz",
               volumes_ml={"enhancing_tumour": 0.5})],
     "derived/edit-2.nii.gz", "edited"),
    ("an accept after an edit restores the AI mask",
     [decision(1, DecisionAction.EDIT, reason="r", mask_key="derived/edit-1.nii.gz"),
      decision(2, DecisionAction.ACCEPT)],
     "derived/ai.nii.gz", "ai"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("chain", "key", "source"), [c[1:] for c in MASK_CASES], ids=[c[0] for c in MASK_CASES]
)
def test_the_mask_in_force(chain, key, source):
    seg = finding(FindingKind.SEGMENTATION, *chain)

    got_key, _sha, got_source = mask_in_force(seg)

    assert (got_key, got_source) == (key, source)
    volumes = region_ml_in_force(seg)
    if source == "edited":
        assert volumes == chain[-1].volumes_ml
    else:
        assert volumes == seg.volumes_ml


def test_algorithm_is_the_findings_provenance():
    algorithm = algorithm_of(finding())
    assert (algorithm.name, algorithm.version, algorithm.training_run, algorithm.synthetic) == (
        "cxr",
        "7",
        "run-1",
        False,
    )


def test_objects_planned_per_finding():
    cxr = finding(FindingKind.CLASSIFICATION, decision(1, DecisionAction.ACCEPT))
    removed = finding(FindingKind.CLASSIFICATION, decision(1, DecisionAction.ACCEPT))
    removed.instance_id = None
    seg = finding(FindingKind.SEGMENTATION, decision(1, DecisionAction.ACCEPT))
    rejected = finding(FindingKind.SEGMENTATION, decision(1, DecisionAction.REJECT, reason="r"))

    planned = planned_objects([cxr, removed, seg, rejected])

    assert [(p.finding_id, p.name, p.kind, p.skip_reason) for p in planned] == [
        (cxr.id, "cxr-sr", "sr", None),
        (removed.id, "cxr-sr", "sr", "source_image_removed"),
        (seg.id, "brats-seg", "seg", None),
        (seg.id, "brats-sr", "sr", None),
        (rejected.id, "brats-seg", "seg", "segmentation_rejected"),
        (rejected.id, "brats-sr", "sr", "segmentation_rejected"),
    ]
    preliminary = planned_objects([cxr, seg], preliminary=True)
    assert [(p.name, p.kind) for p in preliminary] == [("cxr-sr-preliminary", "sr")]


def test_result_uids_are_fixed_per_object_and_distinct_between_objects():
    case_id, finding_id = uuid.uuid4(), uuid.uuid4()
    key = b"k" * 32
    first = result_uids(key, case_id, finding_id, "brats-seg")

    assert first == result_uids(key, case_id, finding_id, "brats-seg")  # a retry: same UIDs
    others = [
        result_uids(key, case_id, finding_id, "brats-sr"),
        result_uids(key, case_id, uuid.uuid4(), "brats-seg"),
        result_uids(key, uuid.uuid4(), finding_id, "brats-seg"),
        result_uids(b"j" * 32, case_id, finding_id, "brats-seg"),
    ]
    uids = {uid for pair in [first, *others] for uid in pair}
    assert len(uids) == 10
    assert all(uid.startswith("2.25.") and len(uid) <= 64 for uid in uids)
