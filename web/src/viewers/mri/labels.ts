/** The tumour segmentation's labels: their colours (the server's PNG renderer's, so both
 * views agree), the colour tables NiiVue draws them with, and their volumes. */

/** A label value of the BraTS label map (0 is background). */
export type LabelValue = 1 | 2 | 3;

export interface SegmentLabel {
  value: LabelValue;
  /** Short name: the pen's button and the legend's abbreviation. */
  short: "NCR" | "ED" | "ET";
  /** The per-region checkbox's label. */
  name: string;
  /** RGB 0-255, as control/imaging/render.py SEGMENT_COLOURS. */
  rgb: readonly [number, number, number];
}

export const SEGMENT_LABELS: readonly SegmentLabel[] = [
  { value: 1, short: "NCR", name: "Necrotic core (NCR)", rgb: [255, 0, 0] },
  { value: 2, short: "ED", name: "Edema (ED)", rgb: [0, 200, 0] },
  { value: 3, short: "ET", name: "Enhancing tumour (ET)", rgb: [255, 220, 0] },
];

/** Which labels are drawn. */
export type LabelVisibility = Record<LabelValue, boolean>;

export const ALL_VISIBLE: LabelVisibility = { 1: true, 2: true, 3: true };

/** NiiVue's drawing colour table (``Niivue.drawLut``): exactly 256 RGBA entries indexed by
 * pen value; 0 and every value that is not a visible label are transparent. */
export function drawingLut(visible: LabelVisibility): { lut: Uint8ClampedArray; labels: string[] } {
  const lut = new Uint8ClampedArray(256 * 4);
  const labels = Array.from({ length: 256 }, (_, i) => String(i));
  labels[0] = "";
  for (const label of SEGMENT_LABELS) {
    const k = label.value * 4;
    lut.set([...label.rgb, visible[label.value] ? 255 : 0], k);
    labels[label.value] = label.short;
  }
  return { lut, labels };
}

/** Millilitres of each label in a label map whose voxels are ``voxelMl`` each. */
export function labelVolumesMl(labels: ArrayLike<number>, voxelMl: number): Record<LabelValue, number> {
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < labels.length; i++) {
    const value = labels[i] as number;
    if (value >= 1 && value <= 3) counts[value] = (counts[value] as number) + 1;
  }
  return { 1: (counts[1] as number) * voxelMl, 2: (counts[2] as number) * voxelMl, 3: (counts[3] as number) * voxelMl };
}

/** Per-label millilitres from the recorded BraTS region volumes (enhancing tumour = ET,
 * tumour core = NCR + ET, whole tumour = NCR + ED + ET); null when a region is missing. */
export function labelVolumesFromRegions(regions: Record<string, number> | null | undefined): Record<LabelValue, number> | null {
  const et = regions?.enhancing_tumour;
  const tc = regions?.tumour_core;
  const wt = regions?.whole_tumour;
  if (et === undefined || tc === undefined || wt === undefined) return null;
  return { 1: Math.max(0, tc - et), 2: Math.max(0, wt - tc), 3: et };
}

/** "12.34 ml", with fewer decimals for large volumes. */
export function formatMl(ml: number): string {
  return `${ml >= 100 ? ml.toFixed(0) : ml >= 10 ? ml.toFixed(1) : ml.toFixed(2)} ml`;
}
