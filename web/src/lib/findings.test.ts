import { describe, expect, it } from "vitest";
import { finding } from "../test/factories";
import { findingTitle, hasView } from "./findings";

describe("findingTitle", () => {
  it.each([
    ["cxr", "classification", "chest X-ray labels"],
    ["brats", "segmentation", "brain tumour segmentation"],
    ["ct_head", "classification", "head CT haemorrhage"],
    ["knee_mri", "classification", "knee_mri classification"],
  ] as const)("a %s %s finding is titled %j", (name, kind, title) => {
    expect(findingTitle(finding({ kind, model: { ...finding().model, name } }))).toBe(title);
  });
});

describe("hasView", () => {
  it("reads the finding's views", () => {
    expect(hasView(finding({ views: ["slice_heatmap"] }), "slice_heatmap")).toBe(true);
    expect(hasView(finding({ views: ["slice_heatmap"] }), "cam")).toBe(false);
    expect(hasView(finding({ views: [] }), "cam")).toBe(false);
  });
});
