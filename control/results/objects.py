"""The result objects a finding becomes in the PACS, by name, and each model's plan of them.

The served-model registry (``control.served``) names each model's plan; the export queue
(:mod:`control.results.jobs`) asks the finding's model for it. A model without result
objects plans none: its findings stay in MedVision.
"""

from __future__ import annotations

from control.db.models import DecisionAction, Finding

CXR_SR = "cxr-sr"
CXR_SR_PRELIMINARY = "cxr-sr-preliminary"
BRATS_SEG = "brats-seg"
BRATS_SR = "brats-sr"
CT_HEAD_SR = "ct-head-sr"
#: The DICOM object kind of each result object.
OBJECT_KINDS = {
    CXR_SR: "sr",
    CXR_SR_PRELIMINARY: "sr",
    BRATS_SEG: "seg",
    BRATS_SR: "sr",
    CT_HEAD_SR: "sr",
}

Plan = list[tuple[str, str | None]]


def cxr_results(finding: Finding, preliminary: bool) -> Plan:
    """One SR per radiograph (``cxr-sr-preliminary`` before sign-off); skipped when the
    radiograph was removed."""
    name = CXR_SR_PRELIMINARY if preliminary else CXR_SR
    return [(name, "source_image_removed" if finding.instance_id is None else None)]


def brats_results(finding: Finding, preliminary: bool) -> Plan:
    """A SEG and an SR after sign-off (none before: only the chest X-ray SR has an
    unverified form); skipped when the radiologist rejected the segmentation without drawing
    a replacement."""
    if preliminary:
        return []
    decision = finding.decisions[-1] if finding.decisions else None
    rejected = decision is not None and decision.action == DecisionAction.REJECT
    reason = "segmentation_rejected" if rejected else None
    return [(BRATS_SEG, reason), (BRATS_SR, reason)]


def ct_head_results(finding: Finding, preliminary: bool) -> Plan:
    """One SR of the study's haemorrhage labels after sign-off (none before)."""
    return [] if preliminary else [(CT_HEAD_SR, None)]
