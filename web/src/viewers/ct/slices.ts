/** The head CT viewer's pure parts: the per-slice endpoints' URLs, the display windows, which
 * slice to start on, which slices have positive labels, and how the slice fits its box. */
import type { SliceRow, SliceTable } from "../../api/types";

/** The label whose heat map the server draws for every slice. */
export const SLICE_HEATMAP_LABEL = "any";

export interface CtWindow {
  /** The server's window name (``?window=``). */
  name: string;
  title: string;
  /** The single key that chooses it. */
  key: string;
  centre: number;
  width: number;
}

/** The head CT display windows, as the network sees the slice (medvision_contract
 * ct_windows.CT_HEAD_WINDOWS): brain 40/80, subdural 80/200, bone 600/2800 HU. */
export const CT_WINDOWS: readonly CtWindow[] = [
  { name: "brain", title: "Brain", key: "1", centre: 40, width: 80 },
  { name: "subdural", title: "Subdural", key: "2", centre: 80, width: 200 },
  { name: "bone", title: "Bone", key: "3", centre: 600, width: 2800 },
];

function perSliceUrl(caseId: string, findingId: string, rest = ""): string {
  return `/api/cases/${encodeURIComponent(caseId)}/findings/${encodeURIComponent(findingId)}/per-slice${rest}`;
}

/** Slice ``index`` as a grey PNG under the named window. */
export function sliceImageUrl(caseId: string, findingId: string, index: number, window: string): string {
  return perSliceUrl(caseId, findingId, `/${index}/image?window=${encodeURIComponent(window)}`);
}

/** Slice ``index``'s heat map (8-bit grey PNG, the slice's aspect ratio, reduced size). */
export function sliceHeatmapUrl(caseId: string, findingId: string, index: number): string {
  return perSliceUrl(caseId, findingId, `/${index}/heatmap`);
}

/** The probability of ``label`` on a slice (0 when the slice has none). */
export function sliceProbability(row: Pick<SliceRow, "probabilities">, label: string = SLICE_HEATMAP_LABEL): number {
  return row.probabilities[label] ?? 0;
}

/** Where reading starts: the slice with the highest ``any`` probability (the first of equals);
 * 0 for an empty table. */
export function startSlice(table: Pick<SliceTable, "slices">): number {
  let best = 0;
  table.slices.forEach((row, n) => {
    if (sliceProbability(row) > sliceProbability(table.slices[best] as SliceRow)) best = n;
  });
  return best;
}

/** The slices the model called positive for at least one label, in slice order. */
export function positiveSlices(table: Pick<SliceTable, "slices">): SliceRow[] {
  return table.slices.filter((row) => row.positive.length > 0);
}

/** ``index`` moved by ``delta``, kept within ``count`` slices. */
export function stepSlice(index: number, delta: number, count: number): number {
  return Math.min(Math.max(0, index + delta), Math.max(0, count - 1));
}

/** The slice's display aspect ratio (width / height) in millimetres: ``columns`` × ``rows``
 * pixels with the table's ``spacing_mm`` (slice, row, column spacing); the pixel aspect
 * ratio without a usable spacing. */
export function displayAspect(columns: number, rows: number, spacingMm: readonly number[]): number {
  const dy = spacingMm[1] ?? 0;
  const dx = spacingMm[2] ?? 0;
  const scale = dx > 0 && dy > 0 ? dx / dy : 1;
  return rows > 0 ? (columns * scale) / rows : 1;
}

/** The largest box of ``aspect`` (width / height) that fits ``width`` × ``height``, centred. */
export function fitRect(width: number, height: number, aspect: number): { left: number; top: number; width: number; height: number } {
  if (width <= 0 || height <= 0 || !(aspect > 0)) return { left: 0, top: 0, width: 0, height: 0 };
  const w = Math.min(width, height * aspect);
  const h = w / aspect;
  return { left: (width - w) / 2, top: (height - h) / 2, width: w, height: h };
}

/** How a slice is named to the user: 1-based number and position along the series. */
export function sliceName(row: Pick<SliceRow, "index" | "position_mm">, count: number): string {
  return `Slice ${row.index + 1} of ${count} (${row.position_mm.toFixed(1)} mm)`;
}
