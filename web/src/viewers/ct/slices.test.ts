import { describe, expect, it } from "vitest";
import type { SliceRow } from "../../api/types";
import { displayAspect, fitRect, positiveSlices, sliceHeatmapUrl, sliceImageUrl, sliceName, startSlice, stepSlice } from "./slices";

function row(index: number, any: number, positive: string[] = []): SliceRow {
  return { index, instance_id: `i${index}`, position_mm: index * 5, probabilities: { any, subdural: any / 2 }, positive };
}

describe("per-slice URLs", () => {
  it("name the slice and the window, escaped", () => {
    expect(sliceImageUrl("c 1", "f/1", 3, "brain")).toBe("/api/cases/c%201/findings/f%2F1/per-slice/3/image?window=brain");
    expect(sliceHeatmapUrl("c1", "f1", 0)).toBe("/api/cases/c1/findings/f1/per-slice/0/heatmap");
  });
});

describe("startSlice", () => {
  const TESTS: [string, SliceRow[], number][] = [
    ["the highest any", [row(0, 0.1), row(1, 0.7), row(2, 0.3)], 1],
    ["the first of equals", [row(0, 0.2), row(1, 0.9), row(2, 0.9)], 1],
    ["0 when all are zero", [row(0, 0), row(1, 0)], 0],
    ["0 for no slices", [], 0],
  ];
  it.each(TESTS)("%s", (_, slices, expected) => {
    expect(startSlice({ slices })).toBe(expected);
  });
});

describe("positiveSlices", () => {
  it("keeps slices with any positive label, in slice order", () => {
    const slices = [row(0, 0.1), row(1, 0.8, ["any"]), row(2, 0.2), row(3, 0.9, ["any", "subdural"])];
    expect(positiveSlices({ slices }).map((r) => r.index)).toEqual([1, 3]);
  });
});

describe("stepSlice", () => {
  it.each([
    [5, 1, 10, 6],
    [9, 1, 10, 9],
    [0, -1, 10, 0],
    [3, -5, 10, 0],
    [0, 1, 0, 0],
  ])("%i by %i of %i slices is %i", (index, delta, count, expected) => {
    expect(stepSlice(index, delta, count)).toBe(expected);
  });
});

describe("displayAspect", () => {
  it.each([
    [512, 512, [5, 0.5, 0.5], 1],
    [512, 256, [5, 0.5, 0.5], 2],
    [100, 100, [5, 1, 0.5], 0.5],
    [100, 50, [], 2],
  ])("%i × %i pixels at %j mm", (columns, rows, spacing, expected) => {
    expect(displayAspect(columns, rows, spacing)).toBeCloseTo(expected);
  });
});

describe("fitRect", () => {
  it.each([
    [800, 400, 1, { left: 200, top: 0, width: 400, height: 400 }],
    [400, 800, 1, { left: 0, top: 200, width: 400, height: 400 }],
    [400, 400, 2, { left: 0, top: 100, width: 400, height: 200 }],
    [0, 400, 1, { left: 0, top: 0, width: 0, height: 0 }],
  ])("%i × %i at aspect %d", (width, height, aspect, expected) => {
    expect(fitRect(width, height, aspect)).toEqual(expected);
  });
});

describe("sliceName", () => {
  it("is 1-based with the position", () => {
    expect(sliceName(row(2, 0.5), 10)).toBe("Slice 3 of 10 (10.0 mm)");
  });
});
