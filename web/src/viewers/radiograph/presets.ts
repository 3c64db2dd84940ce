/**
 * Window/level presets for a radiograph (keys 1–4). A DX has no calibrated unit like CT's
 * Hounsfield scale — its stored values depend on the detector and processing — so presets 2–4
 * are placed relative to the image's own values: within the range from its 1st to its 99th
 * percentile (after the modality LUT), counted in displayed brightness, so that "lung" means
 * the dark end of what is shown for MONOCHROME2 and MONOCHROME1 alike.
 */

export interface VoiRange {
  lower: number;
  upper: number;
}

export interface WindowPreset {
  key: "1" | "2" | "3" | "4";
  name: string;
  /** What the window shows, for the legend. */
  description: string;
  /** Centre and width as fractions of the image's displayed brightness range (0 = darkest
   * value, 1 = brightest); null for the image's own window. */
  window: { centre: number; width: number } | null;
}

export const WINDOW_PRESETS: readonly WindowPreset[] = [
  { key: "1", name: "Default", description: "the image's own window (DICOM Window Center/Width, else its full value range)", window: null },
  { key: "2", name: "Lung", description: "the darker 60 % of the image's values: contrast inside the lung fields", window: { centre: 0.3, width: 0.6 } },
  { key: "3", name: "Bone", description: "the brighter 55 % of the image's values: ribs, spine, clavicles", window: { centre: 0.725, width: 0.55 } },
  { key: "4", name: "Soft tissue", description: "a narrow mid-to-bright window: mediastinum, heart borders, behind the heart", window: { centre: 0.55, width: 0.4 } },
];

/** The first and last ``fraction`` quantiles of a sample of ``values`` (at most about
 * ``maxSamples`` read, evenly spaced), through ``scale`` (the modality LUT when the pixels
 * are stored values). */
export function robustRange(values: ArrayLike<number>, fraction = 0.01, maxSamples = 65_536, scale: (v: number) => number = (v) => v): VoiRange | null {
  const n = values.length;
  if (n === 0) return null;
  const step = Math.max(1, Math.floor(n / maxSamples));
  const sample = new Float64Array(Math.ceil(n / step));
  let k = 0;
  for (let i = 0; i < n; i += step) sample[k++] = values[i] as number;
  const sorted = sample.subarray(0, k).sort();
  const at = (q: number) => sorted[Math.min(k - 1, Math.max(0, Math.round(q * (k - 1))))] as number;
  const a = scale(at(fraction));
  const b = scale(at(1 - fraction));
  const lower = Math.min(a, b);
  const upper = Math.max(a, b);
  return upper > lower ? { lower, upper } : { lower: lower - 0.5, upper: upper + 0.5 };
}

/**
 * The VOI range of a preset: ``own`` for the image's own window; otherwise the preset's
 * brightness window placed on ``range`` (for MONOCHROME1, where high values are shown dark,
 * the window is mirrored so that it covers the same part of what is displayed).
 */
export function presetRange(preset: WindowPreset, own: VoiRange, range: VoiRange, monochrome1: boolean): VoiRange {
  if (preset.window === null) return { ...own };
  const span = range.upper - range.lower;
  const { centre, width } = preset.window;
  const c = monochrome1 ? range.upper - centre * span : range.lower + centre * span;
  const half = (width * span) / 2;
  return { lower: c - half, upper: c + half };
}

/** Window width and centre (level) of a VOI range as DICOM states them (PS3.3 C.11.2.1.2,
 * linear function: the inverse of Cornerstone's lower = c − 0.5 − (w − 1)/2,
 * upper = c − 0.5 + (w − 1)/2), so that a file's Window Center/Width reads back unchanged. */
export function widthCentre(range: VoiRange): { width: number; centre: number } {
  return { width: range.upper - range.lower + 1, centre: (range.upper + range.lower) / 2 + 0.5 };
}
