import { describe, expect, it } from "vitest";
import { caseDetail as detail, finding } from "../test/factories";
import { aiPositiveLabels, decisionRequest, hasSyntheticModel, labelRows, signOffBlocker } from "./decisions";

const decided = { id: "d1", action: "accept" as const, sequence: 1, username: "rad", created_at: "", labels: null, reason: null, note: null, supersedes_id: null, mask_sha256: null, volumes_ml: null };

describe("label rows", () => {
  it("put positives first, each group by falling probability, against each label's threshold", () => {
    const rows = labelRows(finding());
    expect(rows.map((r) => r.label)).toEqual(["Cardiomegaly", "Effusion", "Atelectasis"]);
    expect(rows.map((r) => r.positive)).toEqual([true, false, false]);
    expect(rows[1]?.threshold).toBe(0.6);
  });

  it("AI positives are the model's own calls, in the model's label order", () => {
    const f = finding({ labels: ["Cardiomegaly", "Atelectasis"], probabilities: { Atelectasis: 0.7, Cardiomegaly: 0.9, Effusion: 0.1 } });
    expect(aiPositiveLabels(f)).toEqual(["Atelectasis", "Cardiomegaly"]);
  });

  it("list every scored label, not only the positive ones", () => {
    expect(labelRows(finding({ labels: [] })).map((r) => r.label).sort()).toEqual(["Atelectasis", "Cardiomegaly", "Effusion"]);
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
