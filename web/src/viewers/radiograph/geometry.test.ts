import { describe, expect, it } from "vitest";
import { imageCorners, type ImageGeometry, indexToWorld, mapTransform, type Point2, sameTransform, type Transform2D } from "./geometry";

const AXIAL: ImageGeometry = { origin: [0, 0, 0], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1], spacing: [0.5, 0.25, 1], columns: 400, rows: 200 };

/** Applies a canvas transform to a point, as the 2D context does. */
function apply([a, b, c, d, e, f]: Transform2D, [x, y]: Point2): Point2 {
  return [a * x + c * y + e, b * x + d * y + f];
}

describe("image geometry", () => {
  it("places pixel centres at whole indices, scaled by spacing along the row and column directions", () => {
    expect(indexToWorld(AXIAL, 0, 0)).toEqual([0, 0, 0]);
    expect(indexToWorld(AXIAL, 2, 4)).toEqual([1, 1, 0]);
    const tilted: ImageGeometry = { ...AXIAL, origin: [10, 20, 30], direction: [0, 1, 0, 0, 0, -1, -1, 0, 0] };
    expect(indexToWorld(tilted, 2, 4)).toEqual([10, 21, 29]);
  });

  it("treats a missing spacing as 1", () => {
    expect(indexToWorld({ ...AXIAL, spacing: [0, Number.NaN, 1] }, 3, 5)).toEqual([3, 5, 0]);
  });

  it("takes the outer corners half a pixel outside the corner pixels' centres", () => {
    expect(imageCorners(AXIAL)).toEqual({ topLeft: [-0.25, -0.125, 0], topRight: [199.75, -0.125, 0], bottomLeft: [-0.25, 49.875, 0] });
  });
});

describe("heat map transform", () => {
  // [topLeft, topRight, bottomLeft] on the canvas, map size, device scale.
  const TESTS: [string, Point2, Point2, Point2, number, number, number][] = [
    ["fitted, no zoom", [100, 0], [500, 0], [100, 400], 256, 256, 1],
    ["zoomed and panned off the canvas", [-300, -120], [1300, -120], [-300, 1480], 200, 200, 1],
    ["flipped horizontally", [500, 0], [100, 0], [500, 400], 256, 256, 1],
    ["rotated 90°", [400, 0], [400, 300], [0, 0], 256, 192, 1],
    ["device pixel ratio 2", [10, 20], [210, 20], [10, 120], 128, 64, 2],
  ];

  it.each(TESTS)("maps the map's corners onto the image's: %s", (_name, tl, tr, bl, width, height, scale) => {
    const t = mapTransform(tl, tr, bl, width, height, scale);
    const s = (p: Point2): Point2 => [p[0] * scale, p[1] * scale];
    const close = (p: Point2, q: Point2) => {
      expect(p[0]).toBeCloseTo(q[0], 9);
      expect(p[1]).toBeCloseTo(q[1], 9);
    };
    close(apply(t, [0, 0]), s(tl));
    close(apply(t, [width, 0]), s(tr));
    close(apply(t, [0, height]), s(bl));
    const br: Point2 = [tr[0] + bl[0] - tl[0], tr[1] + bl[1] - tl[1]];
    close(apply(t, [width, height]), s(br));
  });

  it("compares transforms within a tolerance", () => {
    const t = mapTransform([0, 0], [100, 0], [0, 100], 50, 50);
    expect(sameTransform(t, [...t] as Transform2D)).toBe(true);
    expect(sameTransform(t, [t[0], t[1], t[2], t[3], t[4] + 0.5, t[5]])).toBe(false);
    expect(sameTransform(null, t)).toBe(false);
    expect(sameTransform(null, null)).toBe(true);
  });
});
