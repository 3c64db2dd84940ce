/** The audit page's logic: filters from/to the URL, the cursor stack of its pages, the query
 * of one page and what "Verify chain" reports. */
import type { VerifyOut } from "../../api/types";

export const AUDIT_PAGE_SIZE = 50;
/** The API refuses longer filter values (400 validation_failed). */
export const FILTER_MAX_LENGTH = 64;

export interface AuditFilters {
  action: string;
  actor: string;
  /** A case id (or any other target id). */
  caseId: string;
}

export const NO_FILTERS: AuditFilters = { action: "", actor: "", caseId: "" };

const PARAM: Record<keyof AuditFilters, string> = { action: "action", actor: "actor", caseId: "case" };

/** Filters as the URL holds them (?action=&actor=&case=), trimmed, too-long values cut. */
export function filtersFromParams(params: URLSearchParams): AuditFilters {
  const read = (key: keyof AuditFilters) => (params.get(PARAM[key]) ?? "").trim().slice(0, FILTER_MAX_LENGTH);
  return { action: read("action"), actor: read("actor"), caseId: read("caseId") };
}

/** The URL form of the filters; empty ones are left out. */
export function filtersToParams(filters: AuditFilters): URLSearchParams {
  const params = new URLSearchParams();
  for (const key of Object.keys(PARAM) as (keyof AuditFilters)[]) {
    const value = filters[key].trim();
    if (value) params.set(PARAM[key], value);
  }
  return params;
}

export function sameFilters(a: AuditFilters, b: AuditFilters): boolean {
  return a.action.trim() === b.action.trim() && a.actor.trim() === b.actor.trim() && a.caseId.trim() === b.caseId.trim();
}

/**
 * The ``after_id`` cursors of the pages seen so far: the first page starts after 0, each
 * next page after the last id shown on the one before. The last cursor is the current page;
 * going back pops it.
 */
export type CursorStack = readonly number[];

export const FIRST_PAGE: CursorStack = [0];

export function currentCursor(stack: CursorStack): number {
  return stack[stack.length - 1] ?? 0;
}

export function nextPage(stack: CursorStack, lastShownId: number): CursorStack {
  return lastShownId > currentCursor(stack) ? [...stack, lastShownId] : stack;
}

export function previousPage(stack: CursorStack): CursorStack {
  return stack.length > 1 ? stack.slice(0, -1) : FIRST_PAGE;
}

/** The query of one page: one entry more than shown, to know whether a next page exists. */
export function auditQuery(filters: AuditFilters, stack: CursorStack, pageSize = AUDIT_PAGE_SIZE) {
  const query: { after_id: number; limit: number; action?: string; actor?: string; target_id?: string } = {
    after_id: currentCursor(stack),
    limit: pageSize + 1,
  };
  if (filters.action.trim()) query.action = filters.action.trim();
  if (filters.actor.trim()) query.actor = filters.actor.trim();
  if (filters.caseId.trim()) query.target_id = filters.caseId.trim();
  return query;
}

/** The entries to show of an answer to ``auditQuery`` and whether there is a next page. */
export function pageOf<T>(rows: readonly T[], pageSize = AUDIT_PAGE_SIZE): { items: T[]; hasNext: boolean } {
  return { items: rows.slice(0, pageSize), hasNext: rows.length > pageSize };
}

/** One line saying what the chain verification found: "intact" or "BROKEN at entry N". */
export function verifyText(result: VerifyOut): string {
  const counted = `${result.entries} ${result.entries === 1 ? "entry" : "entries"}`;
  if (result.ok) return `Audit chain intact: ${counted} verified.`;
  const where = result.first_broken != null ? ` at entry ${result.first_broken}` : "";
  const why = result.reason ? `: ${result.reason}` : "";
  return `Audit chain BROKEN${where}${why} (${counted} checked).`;
}
