/** What the review panel shows and sends: label order, decision requests, sign-off rules. */
import type { CaseDetail, DecisionAction, DecisionIn, FindingOut } from "../api/types";

export interface LabelRow {
  label: string;
  probability: number;
  threshold: number;
  positive: boolean;
}

type Scored = Pick<FindingOut, "labels" | "probabilities" | "thresholds" | "cam_labels">;

/** Every label the model scores, in the model's order (a finding's ``labels`` holds only
 * the positive ones; its ``probabilities`` hold all of them, in that order). */
export function modelLabels(finding: Scored): string[] {
  const scored = Object.keys(finding.probabilities);
  return scored.length > 0 ? scored : finding.cam_labels;
}

/** The finding's labels, positives first, each group by falling probability. Positive is
 * the model's own call (its POSITIVE output at the operating thresholds). */
export function labelRows(finding: Scored): LabelRow[] {
  const positives = new Set(finding.labels);
  const rows = modelLabels(finding).map((label) => ({
    label,
    probability: finding.probabilities[label] ?? 0,
    threshold: finding.thresholds[label] ?? 0.5,
    positive: positives.has(label),
  }));
  return rows.sort((a, b) => Number(b.positive) - Number(a.positive) || b.probability - a.probability);
}

/** The labels the AI called positive, in the model's label order. */
export function aiPositiveLabels(finding: Scored): string[] {
  const positives = new Set(finding.labels);
  return modelLabels(finding).filter((label) => positives.has(label));
}

export interface DecisionDraft {
  action: DecisionAction;
  reason: string;
  note: string;
  labels: string[];
}

/** The request for ``draft`` on ``finding``, or the problem that keeps it from being sent. */
export function decisionRequest(finding: FindingOut, draft: DecisionDraft): { request: DecisionIn } | { problem: string } {
  const reason = draft.reason.trim();
  if ((draft.action === "reject" || draft.action === "edit") && !reason)
    return { problem: `A ${draft.action === "reject" ? "rejection" : "correction"} needs a reason.` };
  if (draft.action === "edit" && finding.kind !== "classification")
    return { problem: "Correct a segmentation by editing its mask." };
  const request: DecisionIn = {
    action: draft.action,
    reason: reason || null,
    note: draft.note.trim() || null,
    supersedes: finding.current_decision?.id ?? null,
    labels: draft.action === "edit" ? modelLabels(finding).filter((l) => draft.labels.includes(l)) : null,
  };
  return { request };
}

/** Why the case cannot be signed off by ``userId`` now, or null when it can. */
export function signOffBlocker(detail: CaseDetail, userId: string): string | null {
  if (detail.status === "signed_off") return "The case is signed off.";
  if (detail.assignee?.id !== userId) return "Claim the case to review and sign it off.";
  if (detail.status === "received" && !detail.flags.includes("no_model")) return "The AI has not read this case yet.";
  if (detail.status === "queued") return "The AI is still reading this case.";
  const undecided = (detail.findings ?? []).filter((f) => !f.current_decision).length;
  if (undecided > 0) return `${undecided} finding${undecided === 1 ? " needs a decision" : "s need a decision"} first.`;
  return null;
}

/** Whether any finding of the case came from a synthetic (demo) model. */
export function hasSyntheticModel(detail: Pick<CaseDetail, "findings">): boolean {
  return (detail.findings ?? []).some((f) => f.model.synthetic);
}
