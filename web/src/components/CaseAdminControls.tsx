/** Case header controls for admins: assign, reassign or unassign the case to an active
 * radiologist and set its priority (PATCH /api/cases/{id} with the version last seen).
 * A 409 stale_version offers a reload and keeps what was chosen. */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, unwrap } from "../api/client";
import { ApiError } from "../api/errors";
import type { components } from "../api/schema";
import type { CaseDetail, Priority, UserOut } from "../api/types";
import { ErrorMessage } from "./ErrorMessage";

type CaseUpdate = components["schemas"]["CaseUpdate"];

/** What the admin picked; a field left undefined follows the case as loaded. */
export interface AssignmentDraft {
  /** A user id, or "" for unassigned. */
  assigneeId?: string;
  priority?: Priority;
}

const PRIORITIES: { value: Priority; label: string }[] = [
  { value: "stat", label: "STAT" },
  { value: "urgent", label: "urgent" },
  { value: "routine", label: "routine" },
];

/** The PATCH body for the fields that differ from the case, or null when nothing changes. */
export function caseUpdateBody(detail: CaseDetail, draft: AssignmentDraft): CaseUpdate | null {
  const body: CaseUpdate = { version: detail.version };
  const current = detail.assignee?.id ?? "";
  if (draft.assigneeId !== undefined && draft.assigneeId !== current) body.assignee_id = draft.assigneeId || null;
  if (draft.priority !== undefined && draft.priority !== detail.priority) body.priority = draft.priority;
  return "assignee_id" in body || "priority" in body ? body : null;
}

/** The radiologists a case can go to (active ones, by username), plus the current holder
 * when they no longer qualify, so the select can still show who holds it. */
export function assigneeOptions(users: readonly UserOut[], detail: CaseDetail): { id: string; label: string }[] {
  const options = users
    .filter((u) => u.role === "radiologist" && u.is_active)
    .sort((a, b) => a.username.localeCompare(b.username))
    .map((u) => ({ id: u.id, label: u.full_name ? `${u.username} (${u.full_name})` : u.username }));
  const holder = detail.assignee;
  if (holder && !options.some((o) => o.id === holder.id)) options.unshift({ id: holder.id, label: `${holder.username} (not assignable)` });
  return options;
}

export function CaseAdminControls({ detail, onChanged }: { detail: CaseDetail; onChanged: () => void }) {
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState<AssignmentDraft>({});
  const radiologists = useQuery({
    queryKey: ["users", "radiologist"],
    queryFn: async () => unwrap(await api.GET("/api/users", { params: { query: { role: "radiologist" } } })),
    staleTime: 60_000,
  });
  const save = useMutation({
    mutationFn: async (body: CaseUpdate) =>
      unwrap(await api.PATCH("/api/cases/{case_id}", { params: { path: { case_id: detail.id } }, body })),
    onSuccess: () => {
      setDraft({});
      onChanged();
      void queryClient.invalidateQueries({ queryKey: ["cases"] });
    },
  });

  const signedOff = detail.status === "signed_off";
  const body = caseUpdateBody(detail, draft);
  const options = assigneeOptions(radiologists.data ?? [], detail);
  const assigneeValue = draft.assigneeId ?? detail.assignee?.id ?? "";
  const priorityValue = draft.priority ?? detail.priority;
  const stale = save.error instanceof ApiError && save.error.code === "stale_version";

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (body) save.mutate(body);
  };

  return (
    <form aria-label="Case assignment" className="flex flex-wrap items-center gap-2 text-sm" onSubmit={submit}>
      <label className="flex items-center gap-1">
        <span className="text-muted">Assignee</span>
        <select
          className="input py-1"
          value={assigneeValue}
          disabled={signedOff || save.isPending}
          onChange={(e) => setDraft({ ...draft, assigneeId: e.target.value })}
        >
          <option value="">unassigned</option>
          {options.map((o) => (
            <option key={o.id} value={o.id}>
              {o.label}
            </option>
          ))}
        </select>
      </label>
      <label className="flex items-center gap-1">
        <span className="text-muted">Priority</span>
        <select
          className="input py-1"
          value={priorityValue}
          disabled={signedOff || save.isPending}
          onChange={(e) => setDraft({ ...draft, priority: e.target.value as Priority })}
        >
          {PRIORITIES.map((p) => (
            <option key={p.value} value={p.value}>
              {p.label}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" className="btn-primary py-1" disabled={!body || signedOff || save.isPending} title={signedOff ? "A signed-off case is read-only" : undefined}>
        Save assignment
      </button>
      {radiologists.isError && <ErrorMessage error={radiologists.error} title="The radiologists could not be loaded" />}
      {stale ? (
        <div role="alert" className="flex items-center gap-2 rounded border border-warn px-2 py-1 text-xs">
          <span>The case changed since you loaded it. Reload it and save again; your choice is kept.</span>
          <button
            type="button"
            className="btn py-0.5"
            onClick={() => {
              save.reset();
              onChanged();
            }}
          >
            Reload case
          </button>
        </div>
      ) : (
        <ErrorMessage error={save.error} title="The assignment was not saved" />
      )}
    </form>
  );
}
