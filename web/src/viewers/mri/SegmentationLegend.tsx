/** The segmentation's legend: a toggle per region in its overlay colour, its volume, and the
 * overlay's opacity. */
import { type LabelValue, type LabelVisibility, SEGMENT_LABELS, formatMl } from "./labels";

interface Props {
  visible: LabelVisibility;
  onVisible: (visible: LabelVisibility) => void;
  opacity: number;
  onOpacity: (opacity: number) => void;
  /** Recorded volumes (the edit in force, else the AI's), per label. */
  recorded: Record<LabelValue, number> | null;
  /** Volumes of the drawing being edited, when there is one. */
  drawn: Record<LabelValue, number> | null;
}

export function SegmentationLegend({ visible, onVisible, opacity, onOpacity, recorded, drawn }: Props) {
  return (
    <div className="flex flex-wrap items-center gap-x-5 gap-y-1 text-xs">
      <fieldset className="flex flex-wrap items-center gap-x-4 gap-y-1">
        <legend className="sr-only">Segmentation regions</legend>
        {SEGMENT_LABELS.map((label) => (
          <div key={label.value} className="flex items-center gap-1.5">
            <label className="flex cursor-pointer items-center gap-1.5">
              <input type="checkbox" checked={visible[label.value]} onChange={(e) => onVisible({ ...visible, [label.value]: e.target.checked })} />
              <span aria-hidden="true" className="inline-block h-3 w-3 rounded-sm" style={{ backgroundColor: `rgb(${label.rgb.join(",")})` }} />
              {label.name}
            </label>
            <span className="font-mono text-muted" data-testid={`volume-${label.short.toLowerCase()}`}>
              {recorded ? formatMl(recorded[label.value]) : "—"}
              {drawn && (!recorded || formatMl(drawn[label.value]) !== formatMl(recorded[label.value])) && <span className="text-warn"> → {formatMl(drawn[label.value])}</span>}
            </span>
          </div>
        ))}
      </fieldset>
      <label className="flex items-center gap-2">
        <span className="text-muted">Segmentation opacity</span>
        <input
          type="range"
          min={0}
          max={1}
          step={0.05}
          value={opacity}
          onChange={(e) => onOpacity(Number(e.target.value))}
          aria-valuetext={`${Math.round(opacity * 100)}%`}
          className="w-28 accent-[var(--mv-accent)]"
        />
      </label>
    </div>
  );
}
