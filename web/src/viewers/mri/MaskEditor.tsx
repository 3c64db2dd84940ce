/** The mask editing controls: pens (one per label, and an eraser), undo, the required
 * reason and save. The strokes themselves are drawn on the NiiVue canvas. */
import { ApiError } from "../../api/errors";
import { ErrorMessage } from "../../components/ErrorMessage";
import { SEGMENT_LABELS } from "./labels";
import type { PenValue } from "./scene";

const PENS: { value: PenValue; name: string; rgb?: readonly number[] }[] = [
  ...SEGMENT_LABELS.map((l) => ({ value: l.value, name: l.short, rgb: l.rgb })),
  { value: 0, name: "Erase" },
];

interface Props {
  pen: PenValue;
  onPen: (pen: PenValue) => void;
  canUndo: boolean;
  onUndo: () => void;
  reason: string;
  onReason: (reason: string) => void;
  saving: boolean;
  onSave: () => void;
  onCancel: () => void;
  /** Why Save did nothing (e.g. no reason), shown beside the button. */
  problem: string | null;
  error: unknown;
  /** Reloads the case after a conflict; the drawing and the reason stay. */
  onReload: () => void;
}

export function MaskEditor({ pen, onPen, canUndo, onUndo, reason, onReason, saving, onSave, onCancel, problem, error, onReload }: Props) {
  const conflict = error instanceof ApiError && error.isConflict;
  return (
    <section aria-label="Mask editing" className="space-y-2 border-t border-line pt-2 text-sm">
      <div className="flex flex-wrap items-center gap-2">
        <div role="group" aria-label="Pen" className="flex gap-1">
          {PENS.map((p) => (
            <button key={p.name} type="button" className={`btn ${pen === p.value ? "border-accent bg-accent/20" : ""}`} aria-pressed={pen === p.value} onClick={() => onPen(p.value)}>
              {p.rgb ? (
                <span aria-hidden="true" className="inline-block h-3 w-3 rounded-sm" style={{ backgroundColor: `rgb(${p.rgb.join(",")})` }} />
              ) : null}
              {p.name}
            </button>
          ))}
        </div>
        <button type="button" className="btn" onClick={onUndo} disabled={!canUndo || saving}>
          Undo stroke
        </button>
        <span className="text-xs text-muted">Draw with the left mouse button on a slice; scroll to change slice.</span>
      </div>
      <div className="flex flex-wrap items-end gap-2">
        <label className="block min-w-64 flex-1">
          <span className="mb-1 block text-xs text-muted">Reason for the mask edit</span>
          <textarea
            className="input w-full"
            rows={2}
            value={reason}
            onChange={(e) => onReason(e.target.value)}
            maxLength={2000}
            required
            aria-required="true"
            aria-invalid={problem !== null && !reason.trim()}
          />
        </label>
        <div className="flex gap-2 pb-1">
          <button type="button" className="btn-primary" onClick={onSave} disabled={saving}>
            {saving ? "Saving…" : "Save mask"}
          </button>
          <button type="button" className="btn" onClick={onCancel} disabled={saving}>
            Discard edits
          </button>
        </div>
      </div>
      {problem && (
        <p role="alert" className="text-xs text-danger">
          {problem}
        </p>
      )}
      {conflict ? (
        <div role="alert" className="space-y-1 rounded border border-warn p-2 text-xs">
          <p>Someone recorded another decision on this finding since you opened it. Reload to see it; your drawing and reason are kept.</p>
          <button type="button" className="btn" onClick={onReload}>
            Reload
          </button>
        </div>
      ) : (
        <ErrorMessage error={error} title="The mask was not saved" />
      )}
    </section>
  );
}
