/** Accept, reject (reason required) or edit (corrected label set) one AI finding. What the
 * user typed survives a failed request; a 409 offers a reload instead of losing it. */
import { useMutation } from "@tanstack/react-query";
import { forwardRef, useImperativeHandle, useState } from "react";
import { api, unwrap } from "../api/client";
import { ApiError } from "../api/errors";
import type { DecisionAction, FindingOut } from "../api/types";
import { aiPositiveLabels, decisionRequest, modelLabels } from "../lib/decisions";
import { ErrorMessage } from "./ErrorMessage";

export interface DecisionFormHandle {
  accept: () => void;
  startReject: () => void;
}

interface Props {
  caseId: string;
  finding: FindingOut;
  readOnly: boolean;
  onDecided: () => void;
  onReload: () => void;
}

export const DecisionForm = forwardRef<DecisionFormHandle, Props>(function DecisionForm(
  { caseId, finding, readOnly, onDecided, onReload },
  ref,
) {
  const [mode, setMode] = useState<DecisionAction | null>(null);
  const [reason, setReason] = useState("");
  const [note, setNote] = useState("");
  const [labels, setLabels] = useState<string[]>(() => aiPositiveLabels(finding));
  const [problem, setProblem] = useState<string | null>(null);

  const decide = useMutation({
    mutationFn: async (action: DecisionAction) => {
      const built = decisionRequest(finding, { action, reason, note, labels });
      if ("problem" in built) throw new ApiError(400, "reason_required", built.problem);
      return unwrap(
        await api.POST("/api/cases/{case_id}/findings/{finding_id}/decisions", {
          params: { path: { case_id: caseId, finding_id: finding.id } },
          body: built.request,
        }),
      );
    },
    onSuccess: () => {
      setMode(null);
      setReason("");
      setNote("");
      setProblem(null);
      onDecided();
    },
  });

  const send = (action: DecisionAction) => {
    const built = decisionRequest(finding, { action, reason, note, labels });
    if ("problem" in built) {
      setMode(action);
      setProblem(built.problem);
      return;
    }
    setProblem(null);
    decide.mutate(action);
  };

  useImperativeHandle(ref, () => ({
    accept: () => !readOnly && send("accept"),
    startReject: () => !readOnly && setMode("reject"),
  }));

  const conflict = decide.error instanceof ApiError && decide.error.isConflict;
  const current = finding.current_decision;
  return (
    <section aria-label="Decision" className="space-y-2 text-sm">
      {current && (
        <p className="text-xs" data-testid="current-decision">
          Decision: <strong className={current.action === "reject" ? "text-danger" : "text-ok"}>{current.action}</strong> by {current.username}
          {current.reason ? ` — ${current.reason}` : ""}
        </p>
      )}
      {!readOnly && (
        <>
          <div className="flex gap-2">
            <button type="button" className="btn" onClick={() => send("accept")} disabled={decide.isPending}>
              Accept
            </button>
            <button type="button" className="btn-danger" onClick={() => (mode === "reject" ? send("reject") : setMode("reject"))} disabled={decide.isPending}>
              Reject
            </button>
            {finding.kind === "classification" && (
              <button type="button" className="btn" onClick={() => setMode(mode === "edit" ? null : "edit")} disabled={decide.isPending}>
                Edit
              </button>
            )}
          </div>
          {(mode === "reject" || mode === "edit") && (
            <div className="space-y-2 rounded border border-line p-2">
              {mode === "edit" && (
                <fieldset>
                  <legend className="mb-1 text-xs text-muted">Corrected labels</legend>
                  <div className="grid grid-cols-2 gap-x-2">
                    {modelLabels(finding).map((label) => (
                      <label key={label} className="flex items-center gap-1 text-xs">
                        <input
                          type="checkbox"
                          checked={labels.includes(label)}
                          onChange={(e) => setLabels(e.target.checked ? [...labels, label] : labels.filter((l) => l !== label))}
                        />
                        {label}
                      </label>
                    ))}
                  </div>
                </fieldset>
              )}
              <label className="block">
                <span className="mb-1 block text-xs text-muted">Reason</span>
                <textarea className="input w-full" rows={2} value={reason} onChange={(e) => setReason(e.target.value)} maxLength={2000} />
              </label>
              <label className="block">
                <span className="mb-1 block text-xs text-muted">Note (optional)</span>
                <input className="input w-full" value={note} onChange={(e) => setNote(e.target.value)} maxLength={2000} />
              </label>
              <div className="flex gap-2">
                <button type="button" className="btn-primary" onClick={() => send(mode)} disabled={decide.isPending}>
                  {mode === "reject" ? "Confirm rejection" : "Save correction"}
                </button>
                <button type="button" className="btn" onClick={() => setMode(null)}>
                  Cancel
                </button>
              </div>
            </div>
          )}
          {problem && (
            <p role="alert" className="text-xs text-danger">
              {problem}
            </p>
          )}
          {conflict ? (
            <div role="alert" className="space-y-1 rounded border border-warn p-2 text-xs">
              <p>Someone changed this finding since you opened it. Reload to see the latest decision; what you typed is kept.</p>
              <button
                type="button"
                className="btn"
                onClick={() => {
                  decide.reset();
                  onReload();
                }}
              >
                Reload
              </button>
            </div>
          ) : (
            <ErrorMessage error={decide.error} />
          )}
        </>
      )}
      <DecisionHistory finding={finding} />
    </section>
  );
});

function DecisionHistory({ finding }: { finding: FindingOut }) {
  if (finding.decisions.length === 0) return <p className="text-xs text-muted">No decision yet.</p>;
  return (
    <details className="text-xs">
      <summary className="cursor-pointer text-muted">Decision history ({finding.decisions.length})</summary>
      <ol className="mt-1 space-y-1">
        {finding.decisions.map((d) => (
          <li key={d.id}>
            #{d.sequence} {d.action} by {d.username} · {new Date(d.created_at).toLocaleString()}
            {d.reason ? ` — ${d.reason}` : ""}
            {d.labels ? ` [${d.labels.join(", ") || "no labels"}]` : ""}
          </li>
        ))}
      </ol>
    </details>
  );
}
