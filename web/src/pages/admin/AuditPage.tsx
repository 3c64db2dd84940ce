/** The audit log (admins): entries in chain order, filtered by action, actor or case, paged
 * with a stack of after_id cursors; "Verify chain" recomputes the hash chain on the server. */
import { keepPreviousData, useMutation, useQuery } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import type { AuditEntryOut, VerifyOut } from "../../api/types";
import { ErrorMessage } from "../../components/ErrorMessage";
import { formatDateTime } from "../../lib/format";
import {
  AUDIT_PAGE_SIZE,
  auditQuery,
  FILTER_MAX_LENGTH,
  filtersFromParams,
  filtersToParams,
  FIRST_PAGE,
  nextPage,
  pageOf,
  previousPage,
  sameFilters,
  verifyText,
  type AuditFilters,
  type CursorStack,
} from "./audit";

/** Typing pauses this long before the filters apply (Enter applies at once). */
const TYPING_PAUSE_MS = 400;

export function AuditPage() {
  const [params, setParams] = useSearchParams();
  const applied = filtersFromParams(params);
  const [draft, setDraft] = useState<AuditFilters>(applied);
  const [stack, setStack] = useState<CursorStack>(FIRST_PAGE);

  const apply = (filters: AuditFilters) => {
    if (sameFilters(filters, applied)) return;
    setStack(FIRST_PAGE);
    setParams(filtersToParams(filters), { replace: true });
  };
  useEffect(() => {
    const timer = window.setTimeout(() => apply(draft), TYPING_PAUSE_MS);
    return () => window.clearTimeout(timer);
    // Only typing starts the pause; `apply` compares with the URL as it is when it fires.
  }, [draft]);

  const query = auditQuery(applied, stack);
  const entries = useQuery({
    queryKey: ["audit", query],
    queryFn: async () => unwrap(await api.GET("/api/audit", { params: { query } })),
    placeholderData: keepPreviousData,
  });
  const { items, hasNext } = pageOf(entries.data ?? []);

  const verify = useMutation({
    mutationFn: async () => unwrap(await api.GET("/api/audit/verify")),
  });

  const submit = (event: FormEvent) => {
    event.preventDefault();
    apply(draft);
  };
  const field = (key: keyof AuditFilters, label: string, placeholder: string) => (
    <label className="flex flex-col gap-1">
      <span className="text-muted">{label}</span>
      <input
        className="input w-56"
        value={draft[key]}
        placeholder={placeholder}
        maxLength={FILTER_MAX_LENGTH}
        onChange={(e) => setDraft({ ...draft, [key]: e.target.value })}
      />
    </label>
  );
  const pageNumber = stack.length;
  const lastShown = items[items.length - 1];

  return (
    <div className="space-y-3 p-4">
      <div className="flex flex-wrap items-center gap-3">
        <h1 className="text-lg font-semibold">Audit log</h1>
        <span className="text-sm text-muted" aria-live="polite">
          {entries.isFetching ? "loading…" : `page ${pageNumber}`}
        </span>
        <button type="button" className="btn ml-auto" onClick={() => void entries.refetch()}>
          Refresh
        </button>
        <button type="button" className="btn-primary" onClick={() => verify.mutate()} disabled={verify.isPending}>
          Verify chain
        </button>
      </div>

      <VerifyResult pending={verify.isPending} result={verify.data} />
      <ErrorMessage error={verify.error} title="The chain could not be verified" />

      <form className="panel flex flex-wrap items-end gap-3 p-3 text-sm" aria-label="Audit filters" onSubmit={submit}>
        {field("action", "Action", "e.g. case.assigned")}
        {field("actor", "Actor", "username (exact)")}
        {field("caseId", "Case", "case id")}
        <button type="submit" className="btn">
          Apply filters
        </button>
        <button
          type="button"
          className="btn"
          onClick={() => {
            const empty = { action: "", actor: "", caseId: "" };
            setDraft(empty);
            apply(empty);
          }}
        >
          Clear filters
        </button>
      </form>

      <ErrorMessage error={entries.error} title="The audit log could not be loaded" />

      <div className="panel overflow-x-auto">
        <table className="w-full text-left text-sm">
          <caption className="sr-only">Audit entries</caption>
          <thead className="border-b border-line text-muted">
            <tr>
              {["#", "Time", "Action", "Actor", "Role", "Target", "Outcome", "Request id", "Details"].map((heading) => (
                <th key={heading} scope="col" className="px-3 py-2 font-normal">
                  {heading}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {items.map((entry) => (
              <AuditRow key={entry.id} entry={entry} />
            ))}
            {items.length === 0 && !entries.isPending && !entries.isError && (
              <tr>
                <td colSpan={9} className="px-3 py-6 text-center text-muted">
                  No audit entries match these filters.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>

      <nav aria-label="Pages" className="flex items-center gap-2 text-sm">
        <button type="button" className="btn" disabled={pageNumber === 1} onClick={() => setStack(previousPage(stack))}>
          Previous page
        </button>
        <span className="text-muted">
          page {pageNumber} · {AUDIT_PAGE_SIZE} per page, oldest first
        </span>
        <button
          type="button"
          className="btn"
          disabled={!hasNext || !lastShown || entries.isPlaceholderData}
          onClick={() => lastShown && setStack(nextPage(stack, lastShown.id))}
        >
          Next page
        </button>
      </nav>
    </div>
  );
}

function VerifyResult({ pending, result }: { pending: boolean; result: VerifyOut | undefined }) {
  const tone = !result ? "border-line text-muted" : result.ok ? "border-ok bg-ok/10 text-fg" : "border-danger bg-danger/10 text-danger";
  return (
    <div role="status" aria-live="polite" className={result || pending ? `rounded border px-3 py-2 text-sm font-medium ${tone}` : "sr-only"}>
      {pending ? "Verifying the audit chain…" : result ? verifyText(result) : ""}
    </div>
  );
}

function AuditRow({ entry }: { entry: AuditEntryOut }) {
  const fields = Object.keys(entry.details).length;
  const failed = entry.outcome !== "success";
  return (
    <tr className="border-b border-line/60 align-top hover:bg-raised" data-audit-id={entry.id}>
      <td className="px-3 py-2 font-mono text-muted">{entry.id}</td>
      <td className="px-3 py-2 whitespace-nowrap">
        <time dateTime={entry.occurred_at}>{formatDateTime(entry.occurred_at)}</time>
      </td>
      <td className="px-3 py-2 font-mono">{entry.action}</td>
      <td className="px-3 py-2">{entry.actor ?? <span className="text-muted">—</span>}</td>
      <td className="px-3 py-2 text-muted">{entry.actor_role ?? "—"}</td>
      <td className="px-3 py-2">
        <Target entry={entry} />
      </td>
      <td className={`px-3 py-2 ${failed ? "font-semibold text-danger" : "text-ok"}`}>{entry.outcome}</td>
      <td className="px-3 py-2 font-mono text-xs text-muted">{entry.request_id ?? "—"}</td>
      <td className="px-3 py-2">
        {fields === 0 && !entry.client_ip ? (
          <span className="text-muted">—</span>
        ) : (
          <details>
            <summary className="cursor-pointer text-muted">
              {fields} field{fields === 1 ? "" : "s"}
              <span className="sr-only"> of entry {entry.id}</span>
            </summary>
            <pre className="mt-1 max-w-md overflow-x-auto rounded bg-bg p-2 text-xs whitespace-pre-wrap">
              {JSON.stringify(entry.details, null, 2)}
            </pre>
            {entry.client_ip && <p className="text-xs text-muted">client {entry.client_ip}</p>}
          </details>
        )}
      </td>
    </tr>
  );
}

function Target({ entry }: { entry: AuditEntryOut }) {
  if (!entry.target_id) return <span className="text-muted">{entry.target_type ?? "—"}</span>;
  const short = entry.target_id.length > 12 ? `${entry.target_id.slice(0, 8)}…` : entry.target_id;
  return (
    <span className="whitespace-nowrap" title={entry.target_id}>
      <span className="text-muted">{entry.target_type ?? "target"} </span>
      {entry.target_type === "case" ? (
        <Link to={`/cases/${entry.target_id}`} className="font-mono text-accent underline" aria-label={`Open case ${entry.target_id}`}>
          {short}
        </Link>
      ) : (
        <span className="font-mono">{short}</span>
      )}
    </span>
  );
}
