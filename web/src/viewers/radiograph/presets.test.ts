import { describe, expect, it } from "vitest";
import { presetRange, robustRange, type VoiRange, WINDOW_PRESETS, type WindowPreset, widthCentre } from "./presets";

const preset = (key: string): WindowPreset => {
  const found = WINDOW_PRESETS.find((p) => p.key === key);
  if (!found) throw new Error(`no preset ${key}`);
  return found;
};
const OWN: VoiRange = { lower: 0, upper: 4095 };
const RANGE: VoiRange = { lower: 1000, upper: 3000 };

describe("window presets", () => {
  it("are keys 1–4, each with a name and a description for the legend", () => {
    expect(WINDOW_PRESETS.map((p) => p.key)).toEqual(["1", "2", "3", "4"]);
    for (const p of WINDOW_PRESETS) expect(p.name && p.description).toBeTruthy();
  });

  it("1 is the image's own window", () => {
    expect(presetRange(preset("1"), OWN, RANGE, false)).toEqual(OWN);
    expect(presetRange(preset("1"), OWN, RANGE, true)).toEqual(OWN);
  });

  // key, MONOCHROME2 range, MONOCHROME1 range (mirrored within RANGE)
  const TESTS: [string, VoiRange, VoiRange][] = [
    ["2", { lower: 1000, upper: 2200 }, { lower: 1800, upper: 3000 }],
    ["3", { lower: 1900, upper: 3000 }, { lower: 1000, upper: 2100 }],
    ["4", { lower: 1700, upper: 2500 }, { lower: 1500, upper: 2300 }],
  ];
  it.each(TESTS)("%s sits on the image's value range (MONOCHROME2 %j, MONOCHROME1 mirrored %j)", (key, mono2, mono1) => {
    const a = presetRange(preset(key), OWN, RANGE, false);
    const b = presetRange(preset(key), OWN, RANGE, true);
    expect(a.lower).toBeCloseTo(mono2.lower, 6);
    expect(a.upper).toBeCloseTo(mono2.upper, 6);
    expect(b.lower).toBeCloseTo(mono1.lower, 6);
    expect(b.upper).toBeCloseTo(mono1.upper, 6);
  });

  it("lung looks at the darker and bone at the brighter part of what is displayed", () => {
    const lung = widthCentre(presetRange(preset("2"), OWN, RANGE, false));
    const bone = widthCentre(presetRange(preset("3"), OWN, RANGE, false));
    expect(lung.centre).toBeLessThan(bone.centre);
    const lung1 = widthCentre(presetRange(preset("2"), OWN, RANGE, true));
    const bone1 = widthCentre(presetRange(preset("3"), OWN, RANGE, true));
    expect(lung1.centre).toBeGreaterThan(bone1.centre);
  });
});

describe("robust value range", () => {
  it("drops the outer percentiles", () => {
    const values = new Uint16Array(10_000);
    for (let i = 0; i < values.length; i++) values[i] = i;
    values[0] = 60_000;
    const range = robustRange(values, 0.01);
    expect(range?.lower).toBeCloseTo(100, -1);
    expect(range?.upper).toBeCloseTo(9_900, -1);
  });

  it("samples large images and applies the modality LUT", () => {
    const values = new Int16Array(1_000_000).map((_, i) => Math.floor(i / 1000));
    const range = robustRange(values, 0.01, 10_000, (v) => 2 * v - 1024);
    expect(range?.lower).toBeCloseTo(2 * 10 - 1024, -1);
    expect(range?.upper).toBeCloseTo(2 * 990 - 1024, -1);
  });

  it("widens a flat image and has nothing for an empty one", () => {
    expect(robustRange(new Uint8Array(100).fill(7))).toEqual({ lower: 6.5, upper: 7.5 });
    expect(robustRange(new Uint8Array(0))).toBeNull();
  });
});

describe("width and centre", () => {
  it("read back a DICOM Window Center/Width through Cornerstone's linear VOI range", () => {
    // Cornerstone: lower = c − 0.5 − (w − 1)/2, upper = c − 0.5 + (w − 1)/2.
    expect(widthCentre({ lower: 0, upper: 4095 })).toEqual({ width: 4096, centre: 2048 });
    expect(widthCentre({ lower: -160, upper: 239 })).toEqual({ width: 400, centre: 40 });
  });
});
