import { describe, expect, it } from "vitest";
import {
  auditQuery,
  currentCursor,
  filtersFromParams,
  filtersToParams,
  FIRST_PAGE,
  nextPage,
  NO_FILTERS,
  pageOf,
  previousPage,
  sameFilters,
  verifyText,
} from "./audit";

describe("audit cursor stack", () => {
  it("starts after 0, pushes the last shown id and pops back", () => {
    let stack = FIRST_PAGE;
    expect(currentCursor(stack)).toBe(0);
    stack = nextPage(stack, 50);
    stack = nextPage(stack, 120);
    expect(stack).toEqual([0, 50, 120]);
    expect(currentCursor(stack)).toBe(120);
    stack = previousPage(stack);
    expect(currentCursor(stack)).toBe(50);
    stack = previousPage(previousPage(stack));
    expect(stack).toEqual([0]);
  });

  it("never pushes a cursor that does not move forward", () => {
    const stack = nextPage(FIRST_PAGE, 50);
    expect(nextPage(stack, 50)).toBe(stack);
    expect(nextPage(stack, 10)).toBe(stack);
  });

  it("asks for one entry more than a page to know whether a next page exists", () => {
    expect(auditQuery(NO_FILTERS, [0, 40], 20)).toEqual({ after_id: 40, limit: 21 });
    const rows = Array.from({ length: 21 }, (_, i) => i);
    expect(pageOf(rows, 20)).toEqual({ items: rows.slice(0, 20), hasNext: true });
    expect(pageOf(rows.slice(0, 20), 20).hasNext).toBe(false);
    expect(pageOf([], 20)).toEqual({ items: [], hasNext: false });
  });
});

describe("audit filters", () => {
  it("map to the API's action, actor and target_id, trimmed, blanks left out", () => {
    const query = auditQuery({ action: " case.assigned ", actor: "", caseId: "c-1 " }, FIRST_PAGE, 50);
    expect(query).toEqual({ after_id: 0, limit: 51, action: "case.assigned", target_id: "c-1" });
    expect(auditQuery({ action: "", actor: "rad", caseId: " " }, FIRST_PAGE, 50)).toEqual({ after_id: 0, limit: 51, actor: "rad" });
  });

  it("round-trip through the URL; empty filters leave it empty", () => {
    const filters = { action: "auth.login", actor: "admin", caseId: "abc" };
    expect(filtersToParams(filters).toString()).toBe("action=auth.login&actor=admin&case=abc");
    expect(filtersFromParams(filtersToParams(filters))).toEqual(filters);
    expect(filtersToParams(NO_FILTERS).toString()).toBe("");
    expect(filtersFromParams(new URLSearchParams(`actor=${"x".repeat(100)}`)).actor).toHaveLength(64);
  });

  it("compare without surrounding spaces", () => {
    expect(sameFilters({ action: "a ", actor: "", caseId: "" }, { action: "a", actor: " ", caseId: "" })).toBe(true);
    expect(sameFilters({ action: "a", actor: "", caseId: "" }, { action: "a", actor: "b", caseId: "" })).toBe(false);
  });
});

describe("verify result text", () => {
  it("says intact with the count when the chain holds", () => {
    expect(verifyText({ ok: true, entries: 15, first_broken: null, reason: null })).toBe("Audit chain intact: 15 entries verified.");
    expect(verifyText({ ok: true, entries: 1, first_broken: null, reason: null })).toBe("Audit chain intact: 1 entry verified.");
  });

  it("names the first broken entry and why", () => {
    const text = verifyText({ ok: false, entries: 4, first_broken: 4, reason: "content does not match its hash" });
    expect(text).toBe("Audit chain BROKEN at entry 4: content does not match its hash (4 entries checked).");
  });

  it("still says BROKEN when the server names no entry or reason", () => {
    expect(verifyText({ ok: false, entries: 0, first_broken: null, reason: null })).toBe("Audit chain BROKEN (0 entries checked).");
  });
});
