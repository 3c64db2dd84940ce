import { describe, expect, it } from "vitest";
import type { CaseDetail, FindingOut } from "../api/types";
import { aiPositiveLabels, decisionRequest, hasSyntheticModel, labelRows, signOffBlocker } from "./decisions";

export function finding(overrides: Partial<FindingOut> = {}): FindingOut {
  return {
    id: "f1",
    kind: "classification",
    subject: "instance",
    instance_id: "i1",
    labels: ["Atelectasis", "Cardiomegaly", "Effusion"],
    probabilities: { Atelectasis: 0.2, Cardiomegaly: 0.9, Effusion: 0.55 },
    thresholds: { Atelectasis: 0.5, Cardiomegaly: 0.5, Effusion: 0.6 },
    cam_labels: ["Atelectasis", "Cardiomegaly", "Effusion"],
    volumes_ml: {},
    model: { name: "cxr", network: "densenet121", version: "1", training_run_id: "run-1", synthetic: true },
    input_sha256: "a",
    output_sha256: "b",
    latency_ms: 10,
    created_at: "2026-01-01T00:00:00Z",
    decisions: [],
    current_decision: null,
    ...overrides,
  };
}

function detail(overrides: Partial<CaseDetail> = {}): CaseDetail {
  return {
    id: "c1",
    status: "in_review",
    priority: "routine",
    modality: "DX",
    pipeline: "cxr",
    flags: [],
    status_reason: null,
    assignee: { id: "u1", username: "rad" },
    version: 3,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    signed_off_at: null,
    sign_off_note: null,
    study: {
      id: "s1", study_uid: "2.25.1", modality: "DX", source_format: "dicom", series_count: 1, instance_count: 1,
      age_band: "40-49", sex: "F", race_ethnicity: null, study_date: null,
    },
    series: [],
    findings: [finding()],
    history: [],
    ...overrides,
  };
}

const decided = { id: "d1", action: "accept" as const, sequence: 1, username: "rad", created_at: "", labels: null, reason: null, note: null, supersedes_id: null, mask_sha256: null, volumes_ml: null };

describe("label rows", () => {
  it("put positives first, each group by falling probability, against each label's threshold", () => {
    const rows = labelRows(finding());
    expect(rows.map((r) => r.label)).toEqual(["Cardiomegaly", "Effusion", "Atelectasis"]);
    expect(rows.map((r) => r.positive)).toEqual([true, false, false]);
    expect(rows[1]?.threshold).toBe(0.6);
  });

  it("AI positives keep the model's label order", () => {
    const f = finding({ probabilities: { Atelectasis: 0.7, Cardiomegaly: 0.9, Effusion: 0.1 } });
    expect(aiPositiveLabels(f)).toEqual(["Atelectasis", "Cardiomegaly"]);
  });
});

describe("decision requests", () => {
  const draft = { action: "accept" as const, reason: "", note: "", labels: [] };

  it("accept needs no reason and supersedes the current decision", () => {
    const result = decisionRequest(finding({ current_decision: decided }), draft);
    expect(result).toEqual({ request: { action: "accept", reason: null, note: null, supersedes: "d1", labels: null } });
  });

  it("reject and edit need a reason", () => {
    expect(decisionRequest(finding(), { ...draft, action: "reject", reason: "   " })).toHaveProperty("problem");
    expect(decisionRequest(finding(), { ...draft, action: "edit" })).toHaveProperty("problem");
  });

  it("an edit sends the corrected labels in model order", () => {
    const result = decisionRequest(finding(), { ...draft, action: "edit", reason: "missed effusion", labels: ["Effusion", "Atelectasis"] });
    expect(result).toMatchObject({ request: { action: "edit", labels: ["Atelectasis", "Effusion"], reason: "missed effusion" } });
  });

  it("a segmentation is corrected through its mask, not a label edit", () => {
    expect(decisionRequest(finding({ kind: "segmentation" }), { ...draft, action: "edit", reason: "x" })).toHaveProperty("problem");
  });
});

describe("sign-off", () => {
  it("is blocked until every finding has a decision", () => {
    expect(signOffBlocker(detail(), "u1")).toMatch(/1 finding needs a decision/);
    expect(signOffBlocker(detail({ findings: [finding({ current_decision: decided })] }), "u1")).toBeNull();
  });

  it("is only for the holder of an open case", () => {
    expect(signOffBlocker(detail(), "someone-else")).toMatch(/Claim/);
    expect(signOffBlocker(detail({ status: "signed_off" }), "u1")).toMatch(/signed off/);
    expect(signOffBlocker(detail({ status: "queued", findings: [] }), "u1")).toMatch(/still reading/);
  });

  it("a case no model reads can be signed off without findings", () => {
    expect(signOffBlocker(detail({ status: "received", flags: ["no_model"], findings: [] }), "u1")).toBeNull();
  });

  it("flags synthetic models", () => {
    expect(hasSyntheticModel(detail())).toBe(true);
    expect(hasSyntheticModel(detail({ findings: [finding({ model: { ...finding().model, synthetic: false } })] }))).toBe(false);
  });
});
