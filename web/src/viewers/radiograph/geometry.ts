/** Where the image lies on the screen: the heat map is drawn with the 2D canvas transform
 * that takes its pixels onto the image's, recomputed from the viewport's world → canvas
 * mapping after every render (zoom, pan, rotation and flips included). */

export type Point2 = readonly [number, number];
export type Point3 = readonly [number, number, number];

/** A stack image's geometry as Cornerstone builds it (StackViewport getImageData()):
 * ``direction`` is row cosines, column cosines, normal (9 numbers); index (i, j) is the
 * centre of column i, row j. */
export interface ImageGeometry {
  origin: ArrayLike<number>;
  direction: ArrayLike<number>;
  spacing: ArrayLike<number>;
  columns: number;
  rows: number;
}

/** The world position of image index (i, j) (pixel centres at whole numbers). */
export function indexToWorld(g: ImageGeometry, i: number, j: number): Point3 {
  const sx = g.spacing[0] || 1;
  const sy = g.spacing[1] || 1;
  const d = g.direction;
  const o = g.origin;
  const at = (k: number) => (o[k] ?? 0) + i * sx * (d[k] ?? 0) + j * sy * (d[k + 3] ?? 0);
  return [at(0), at(1), at(2)];
}

/** The outer corners of the image (pixel edges, not centres) in world space. */
export function imageCorners(g: ImageGeometry): { topLeft: Point3; topRight: Point3; bottomLeft: Point3 } {
  return {
    topLeft: indexToWorld(g, -0.5, -0.5),
    topRight: indexToWorld(g, g.columns - 0.5, -0.5),
    bottomLeft: indexToWorld(g, -0.5, g.rows - 0.5),
  };
}

/** A 2D canvas transform ``[a, b, c, d, e, f]`` (as ``setTransform`` takes it). */
export type Transform2D = [number, number, number, number, number, number];

/**
 * The transform that draws a ``width`` × ``height`` map over the whole image, given where the
 * image's top-left, top-right and bottom-left outer corners are on the canvas (CSS pixels),
 * at ``scale`` device pixels per CSS pixel: map pixel (u, v) lands at
 * ``topLeft + u/width · (topRight − topLeft) + v/height · (bottomLeft − topLeft)``.
 */
export function mapTransform(topLeft: Point2, topRight: Point2, bottomLeft: Point2, width: number, height: number, scale = 1): Transform2D {
  return [
    ((topRight[0] - topLeft[0]) / width) * scale,
    ((topRight[1] - topLeft[1]) / width) * scale,
    ((bottomLeft[0] - topLeft[0]) / height) * scale,
    ((bottomLeft[1] - topLeft[1]) / height) * scale,
    topLeft[0] * scale,
    topLeft[1] * scale,
  ];
}

/** True when two transforms place the map within ``tolerance`` device pixels of each other. */
export function sameTransform(a: Transform2D | null, b: Transform2D | null, tolerance = 1e-3): boolean {
  if (a === null || b === null) return a === b;
  return a.every((v, k) => Math.abs(v - (b[k] as number)) <= tolerance);
}
