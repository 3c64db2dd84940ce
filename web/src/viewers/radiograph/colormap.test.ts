import { describe, expect, it } from "vitest";
import { ALPHA_RAMP, camAlpha, colouriseGrey, JET_STOPS, jetColour, jetLut } from "./colormap";

describe("jet colour map", () => {
  // The legend's stops (FindingsPanel CamLegend), evenly spaced over 0–255.
  const STOPS: [number, [number, number, number]][] = [
    [0, [0x00, 0x00, 0x8f]],
    [51, [0x00, 0x00, 0xff]],
    [102, [0x00, 0xff, 0xff]],
    [153, [0xff, 0xff, 0x00]],
    [204, [0xff, 0x00, 0x00]],
    [255, [0x80, 0x00, 0x00]],
  ];

  it.each(STOPS)("activation %i is the legend's stop %j", (activation, rgb) => {
    expect(jetColour(activation)).toEqual(rgb);
  });

  it("interpolates between stops and clamps outside 0–255", () => {
    expect(jetColour(25.5)).toEqual([0, 0, Math.round((0x8f + 0xff) / 2)]);
    expect(jetColour(127.5)).toEqual([128, 255, 128]);
    expect(jetColour(-10)).toEqual(jetColour(0));
    expect(jetColour(300)).toEqual(jetColour(255));
    expect(JET_STOPS).toHaveLength(6);
  });

  it("is transparent at 0 and opaque from the ramp's end", () => {
    expect(camAlpha(0)).toBe(0);
    expect(camAlpha(ALPHA_RAMP / 2)).toBe(128);
    expect(camAlpha(ALPHA_RAMP)).toBe(255);
    expect(camAlpha(255)).toBe(255);
  });

  it("tabulates 256 RGBA entries", () => {
    const lut = jetLut();
    expect(lut).toHaveLength(1024);
    expect(Array.from(lut.slice(0, 4))).toEqual([0, 0, 0x8f, 0]);
    expect(Array.from(lut.slice(255 * 4))).toEqual([0x80, 0, 0, 255]);
  });

  it("colours grey RGBA pixels in place", () => {
    const pixels = Uint8ClampedArray.from([0, 0, 0, 255, 204, 204, 204, 255, 16, 16, 16, 255]);
    colouriseGrey(pixels);
    expect(Array.from(pixels)).toEqual([0, 0, 0x8f, 0, 255, 0, 0, 255, ...jetColour(16), camAlpha(16)]);
  });
});
