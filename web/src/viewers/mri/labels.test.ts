import { describe, expect, it } from "vitest";
import { drawingLut, formatMl, labelVolumesFromRegions, labelVolumesMl } from "./labels";

describe("label colours", () => {
  it("are the server renderer's, in a 256-entry table with background transparent", () => {
    const { lut } = drawingLut({ 1: true, 2: true, 3: true });
    expect(Array.from(lut.slice(0, 16))).toEqual([0, 0, 0, 0, 255, 0, 0, 255, 0, 200, 0, 255, 255, 220, 0, 255]);
  });

  it("make a hidden region transparent", () => {
    const { lut, labels } = drawingLut({ 1: false, 2: true, 3: true });
    expect(lut.length).toBe(1024);
    expect(Array.from(lut.slice(0, 16))).toEqual([0, 0, 0, 0, 255, 0, 0, 0, 0, 200, 0, 255, 255, 220, 0, 255]);
    expect(lut.slice(16).every((v) => v === 0)).toBe(true);
    expect(labels.slice(0, 4)).toEqual(["", "NCR", "ED", "ET"]);
  });
});

describe("label volumes", () => {
  it("count each label's voxels", () => {
    expect(labelVolumesMl(Uint8Array.from([0, 1, 1, 2, 3, 3, 3, 7]), 0.5)).toEqual({ 1: 1, 2: 0.5, 3: 1.5 });
  });

  it("derive from the BraTS regions (TC = NCR + ET, WT = TC + ED)", () => {
    expect(labelVolumesFromRegions({ enhancing_tumour: 2, tumour_core: 5, whole_tumour: 12 })).toEqual({ 1: 3, 2: 7, 3: 2 });
    expect(labelVolumesFromRegions({ enhancing_tumour: 2 })).toBeNull();
    expect(labelVolumesFromRegions(null)).toBeNull();
  });

  it("format in millilitres", () => {
    expect(formatMl(1.234)).toBe("1.23 ml");
    expect(formatMl(12.34)).toBe("12.3 ml");
    expect(formatMl(123.4)).toBe("123 ml");
  });
});
