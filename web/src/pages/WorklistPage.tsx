/** The worklist: the cases this user may see, filtered, sorted and paged; claim from here. */
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { api, unwrap } from "../api/client";
import type { CaseOut } from "../api/types";
import { useAuth } from "../auth/AuthProvider";
import { PriorityBadge, StatusBadge } from "../components/Badges";
import { ErrorMessage } from "../components/ErrorMessage";
import { formatDateTime, STATUS_LABEL } from "../lib/format";
import { useShortcuts } from "../lib/keyboard";
import { casesQuery, filtersFromParams, filtersToParams, PAGE_SIZE, withFilter, type WorklistFilters } from "../lib/worklistFilters";
import { rememberOrder } from "../lib/worklistOrder";

const REFRESH_MS = 15_000;

export function WorklistPage() {
  const { user } = useAuth();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [params, setParams] = useSearchParams();
  const filters = filtersFromParams(params);
  const update = <K extends keyof WorklistFilters>(key: K, value: WorklistFilters[K]) =>
    setParams(filtersToParams(withFilter(filters, key, value)), { replace: true });

  const cases = useQuery({
    queryKey: ["cases", filters],
    queryFn: async () => unwrap(await api.GET("/api/cases", { params: { query: casesQuery(filters) } })),
    refetchInterval: REFRESH_MS,
    refetchOnWindowFocus: true,
    placeholderData: keepPreviousData,
  });
  const items = cases.data?.items ?? [];
  useEffect(() => rememberOrder(items.map((c) => c.id)), [items]);

  const claim = useMutation({
    mutationFn: async (caseId: string) =>
      unwrap(await api.POST("/api/cases/{case_id}/claim", { params: { path: { case_id: caseId } } })),
    onSuccess: (_data, caseId) => {
      void queryClient.invalidateQueries({ queryKey: ["cases"] });
      navigate(`/cases/${caseId}`);
    },
  });

  useShortcuts({
    j: () => items[0] && navigate(`/cases/${items[0].id}`),
  });

  const total = cases.data?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const canClaim = user?.role === "radiologist";

  return (
    <div className="space-y-3 p-4">
      <div className="flex items-baseline gap-3">
        <h1 className="text-lg font-semibold">Worklist</h1>
        <span className="text-sm text-muted" aria-live="polite">
          {cases.isFetching ? "refreshing…" : `${total} case${total === 1 ? "" : "s"}`}
        </span>
        <button type="button" className="btn ml-auto" onClick={() => void cases.refetch()}>
          Refresh
        </button>
      </div>

      <form className="panel flex flex-wrap items-end gap-3 p-3 text-sm" aria-label="Worklist filters" onSubmit={(e) => e.preventDefault()}>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Status</span>
          <select
            className="input"
            value={filters.status[0] ?? ""}
            onChange={(e) => update("status", e.target.value ? [e.target.value] : [])}
          >
            <option value="">any</option>
            {Object.entries(STATUS_LABEL).map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Assignee</span>
          <select className="input" value={filters.assignee} onChange={(e) => update("assignee", e.target.value as WorklistFilters["assignee"])}>
            <option value="">anyone</option>
            <option value="me">me</option>
            <option value="unassigned">unassigned</option>
          </select>
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Modality</span>
          <select className="input" value={filters.modality} onChange={(e) => update("modality", e.target.value)}>
            <option value="">any</option>
            {["CR", "DX", "CT", "MR"].map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Priority</span>
          <select className="input" value={filters.priority} onChange={(e) => update("priority", e.target.value as WorklistFilters["priority"])}>
            <option value="">any</option>
            <option value="stat">STAT</option>
            <option value="urgent">urgent</option>
            <option value="routine">routine</option>
          </select>
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Received from</span>
          <input className="input" type="date" value={filters.receivedFrom} onChange={(e) => update("receivedFrom", e.target.value)} />
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Received to</span>
          <input className="input" type="date" value={filters.receivedTo} onChange={(e) => update("receivedTo", e.target.value)} />
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Sort by</span>
          <select className="input" value={filters.sort} onChange={(e) => update("sort", e.target.value as WorklistFilters["sort"])}>
            <option value="priority">priority</option>
            <option value="created_at">received</option>
            <option value="updated_at">updated</option>
            <option value="status">status</option>
            <option value="modality">modality</option>
          </select>
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Order</span>
          <select className="input" value={filters.order} onChange={(e) => update("order", e.target.value as WorklistFilters["order"])}>
            <option value="asc">ascending</option>
            <option value="desc">descending</option>
          </select>
        </label>
        <button type="button" className="btn" onClick={() => setParams(new URLSearchParams(), { replace: true })}>
          Clear filters
        </button>
      </form>

      <ErrorMessage error={cases.error} title="The worklist could not be loaded" />
      <ErrorMessage error={claim.error} title="Claim failed" />

      <div className="panel overflow-x-auto">
        <table className="w-full text-left text-sm">
          <caption className="sr-only">Cases</caption>
          <thead className="border-b border-line text-muted">
            <tr>
              <th scope="col" className="px-3 py-2 font-normal">Priority</th>
              <th scope="col" className="px-3 py-2 font-normal">Status</th>
              <th scope="col" className="px-3 py-2 font-normal">Modality</th>
              <th scope="col" className="px-3 py-2 font-normal">Patient</th>
              <th scope="col" className="px-3 py-2 font-normal">Received</th>
              <th scope="col" className="px-3 py-2 font-normal">Assignee</th>
              <th scope="col" className="px-3 py-2 font-normal">Flags</th>
              <th scope="col" className="px-3 py-2 font-normal">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {items.map((c) => (
              <CaseRow key={c.id} item={c} canClaim={canClaim} claiming={claim.isPending && claim.variables === c.id} onClaim={() => claim.mutate(c.id)} />
            ))}
            {items.length === 0 && !cases.isPending && (
              <tr>
                <td colSpan={8} className="px-3 py-6 text-center text-muted">
                  No cases match these filters.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>

      <nav aria-label="Pages" className="flex items-center gap-2 text-sm">
        <button type="button" className="btn" disabled={filters.page === 0} onClick={() => update("page", filters.page - 1)}>
          Previous page
        </button>
        <span className="text-muted">
          page {filters.page + 1} of {pages}
        </span>
        <button type="button" className="btn" disabled={filters.page + 1 >= pages} onClick={() => update("page", filters.page + 1)}>
          Next page
        </button>
      </nav>
    </div>
  );
}

function CaseRow({ item, canClaim, claiming, onClaim }: { item: CaseOut; canClaim: boolean; claiming: boolean; onClaim: () => void }) {
  const stat = item.priority === "stat";
  const patient = [item.study.sex, item.study.age_band].filter(Boolean).join(" · ") || "—";
  return (
    <tr className={`border-b border-line/60 hover:bg-raised ${stat ? "bg-danger/10" : ""}`} data-case-id={item.id}>
      <td className="px-3 py-2">
        <PriorityBadge priority={item.priority} />
      </td>
      <td className="px-3 py-2">
        <StatusBadge status={item.status} />
      </td>
      <td className="px-3 py-2 font-mono">{item.modality}</td>
      <td className="px-3 py-2">{patient}</td>
      <td className="px-3 py-2 text-muted">{formatDateTime(item.created_at)}</td>
      <td className="px-3 py-2">{item.assignee?.username ?? <span className="text-muted">unassigned</span>}</td>
      <td className="px-3 py-2 text-xs text-warn">{item.flags.join(", ")}</td>
      <td className="px-3 py-2 text-right whitespace-nowrap">
        {canClaim && !item.assignee && item.status !== "signed_off" && (
          <button type="button" className="btn mr-2" onClick={onClaim} disabled={claiming} aria-label={`Claim case ${item.id.slice(0, 8)}`}>
            Claim
          </button>
        )}
        <Link to={`/cases/${item.id}`} className="text-accent underline" aria-label={`Open case ${item.id.slice(0, 8)}`}>
          Open
        </Link>
      </td>
    </tr>
  );
}
