/** A classification finding's labels: probability bars with the operating threshold marked,
 * positives first and highlighted, and the heat map's display controls. For a radiograph
 * (``cam`` view) choosing a label shows its heat map (CAM); a head CT (``slice_heatmap``
 * view) has one heat map per slice, of ``any``, so its labels are not choices. */
import type { FindingOut } from "../api/types";
import { type LabelRow, labelRows } from "../lib/decisions";
import { hasView } from "../lib/findings";
import { formatPercent } from "../lib/format";
import { SLICE_HEATMAP_LABEL } from "../viewers/ct/slices";

export interface OverlayState {
  label: string | null;
  visible: boolean;
  opacity: number;
}

export function FindingsPanel({
  finding,
  overlay,
  onOverlay,
}: {
  finding: FindingOut;
  overlay: OverlayState;
  onOverlay: (next: OverlayState) => void;
}) {
  const rows = labelRows(finding);
  const perSlice = hasView(finding, "slice_heatmap");
  const heatLabel = perSlice ? `${SLICE_HEATMAP_LABEL}, this slice` : overlay.label;
  return (
    <section aria-label="AI labels" className="space-y-2">
      {perSlice && <p className="text-xs text-muted">Study level: the highest probability over the slices.</p>}
      <ul className="space-y-1" aria-label="Labels">
        {rows.map((row) => {
          if (perSlice)
            return (
              <li key={row.label} className="px-2 py-1" aria-label={rowName(row)} data-label={row.label} data-positive={row.positive}>
                <LabelBar row={row} />
              </li>
            );
          const selected = overlay.label === row.label;
          const hasCam = finding.cam_labels.includes(row.label);
          return (
            <li key={row.label}>
              <button
                type="button"
                className={`w-full rounded px-2 py-1 text-left ${selected ? "bg-raised ring-1 ring-accent" : "hover:bg-raised"}`}
                aria-pressed={selected}
                aria-label={rowName(row)}
                disabled={!hasCam}
                onClick={() => onOverlay({ ...overlay, label: row.label, visible: true })}
                data-label={row.label}
                data-positive={row.positive}
              >
                <LabelBar row={row} />
              </button>
            </li>
          );
        })}
      </ul>
      <div className="space-y-2 border-t border-line pt-2 text-xs">
        <label className="flex items-center gap-2">
          <input type="checkbox" checked={overlay.visible} onChange={(e) => onOverlay({ ...overlay, visible: e.target.checked })} />
          <span>Show heat map{heatLabel ? ` (${heatLabel})` : ""} — key o</span>
        </label>
        <label className="flex items-center gap-2">
          <span className="w-24 text-muted">Overlay opacity</span>
          <input
            type="range"
            min={0}
            max={1}
            step={0.05}
            value={overlay.opacity}
            onChange={(e) => onOverlay({ ...overlay, opacity: Number(e.target.value) })}
            aria-label="Overlay opacity"
          />
        </label>
        <CamLegend />
      </div>
    </section>
  );
}

function rowName(row: LabelRow): string {
  return `${row.label} ${formatPercent(row.probability)}${row.positive ? " positive" : ""}`;
}

/** One label: name, probability and a bar with the threshold marked. */
export function LabelBar({ row }: { row: LabelRow }) {
  return (
    <>
      <div className="flex justify-between text-xs">
        <span className={row.positive ? "font-semibold text-warn" : "text-fg"}>{row.label}</span>
        <span className={row.positive ? "text-warn" : "text-muted"}>{formatPercent(row.probability)}</span>
      </div>
      <div className="relative mt-1 h-1.5 rounded bg-bg" aria-hidden="true">
        <div className={`h-1.5 rounded ${row.positive ? "bg-warn" : "bg-accent/70"}`} style={{ width: `${Math.min(100, row.probability * 100)}%` }} />
        <div className="absolute -top-0.5 h-2.5 w-0.5 bg-fg" style={{ left: `${row.threshold * 100}%` }} title={`threshold ${formatPercent(row.threshold)}`} />
      </div>
    </>
  );
}

/** The colour scale of the heat maps (jet, as the viewer draws them). */
export function CamLegend() {
  return (
    <div aria-label="Heat map scale" role="img" className="flex items-center gap-2 text-muted">
      <span>low</span>
      <div className="h-2 flex-1 rounded" style={{ background: "linear-gradient(to right, #00008f, #0000ff, #00ffff, #ffff00, #ff0000, #800000)" }} />
      <span>high</span>
    </div>
  );
}
