/** The worklist's filters, kept in the URL (so a reload or a shared link keeps them) and
 * turned into the query of GET /api/cases. */
export interface WorklistFilters {
  status: string[];
  assignee: "" | "me" | "unassigned";
  modality: string;
  priority: "" | "stat" | "urgent" | "routine";
  receivedFrom: string;
  receivedTo: string;
  sort: "priority" | "created_at" | "updated_at" | "status" | "modality";
  order: "asc" | "desc";
  page: number;
}

export const PAGE_SIZE = 25;
export const OPEN_STATUSES = ["received", "queued", "inferred", "in_review", "failed"];

export const DEFAULT_FILTERS: WorklistFilters = {
  status: [],
  assignee: "",
  modality: "",
  priority: "",
  receivedFrom: "",
  receivedTo: "",
  sort: "priority",
  order: "asc",
  page: 0,
};

const SORTS = new Set(["priority", "created_at", "updated_at", "status", "modality"]);
const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Filters read from URL search params; anything malformed falls back to its default. */
export function filtersFromParams(params: URLSearchParams): WorklistFilters {
  const assignee = params.get("assignee");
  const priority = params.get("priority");
  const sort = params.get("sort");
  const page = Number(params.get("page") ?? "0");
  const date = (name: string) => {
    const value = params.get(name) ?? "";
    return DATE.test(value) ? value : "";
  };
  return {
    status: params.getAll("status").filter((s) => s.length > 0),
    assignee: assignee === "me" || assignee === "unassigned" ? assignee : "",
    modality: (params.get("modality") ?? "").toUpperCase().replace(/[^A-Z]/g, "").slice(0, 16),
    priority: priority === "stat" || priority === "urgent" || priority === "routine" ? priority : "",
    receivedFrom: date("from"),
    receivedTo: date("to"),
    sort: sort && SORTS.has(sort) ? (sort as WorklistFilters["sort"]) : "priority",
    order: params.get("order") === "desc" ? "desc" : "asc",
    page: Number.isInteger(page) && page >= 0 ? page : 0,
  };
}

/** URL search params holding only what differs from the defaults. */
export function filtersToParams(filters: WorklistFilters): URLSearchParams {
  const params = new URLSearchParams();
  for (const status of filters.status) params.append("status", status);
  if (filters.assignee) params.set("assignee", filters.assignee);
  if (filters.modality) params.set("modality", filters.modality);
  if (filters.priority) params.set("priority", filters.priority);
  if (filters.receivedFrom) params.set("from", filters.receivedFrom);
  if (filters.receivedTo) params.set("to", filters.receivedTo);
  if (filters.sort !== "priority") params.set("sort", filters.sort);
  if (filters.order !== "asc") params.set("order", filters.order);
  if (filters.page > 0) params.set("page", String(filters.page));
  return params;
}

/** The query of GET /api/cases for these filters. */
export function casesQuery(filters: WorklistFilters) {
  return {
    status: filters.status.length > 0 ? (filters.status as ("received" | "queued" | "inferred" | "in_review" | "signed_off" | "failed")[]) : undefined,
    assignee: filters.assignee || undefined,
    modality: filters.modality || undefined,
    priority: filters.priority || undefined,
    received_from: filters.receivedFrom || undefined,
    received_to: filters.receivedTo || undefined,
    sort: filters.sort,
    order: filters.order,
    limit: PAGE_SIZE,
    offset: filters.page * PAGE_SIZE,
  };
}

/** A change of any filter but the page goes back to the first page. */
export function withFilter<K extends keyof WorklistFilters>(
  filters: WorklistFilters,
  key: K,
  value: WorklistFilters[K],
): WorklistFilters {
  return { ...filters, [key]: value, page: key === "page" ? (value as number) : 0 };
}
