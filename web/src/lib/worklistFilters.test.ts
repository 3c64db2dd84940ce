import { describe, expect, it } from "vitest";
import { casesQuery, DEFAULT_FILTERS, filtersFromParams, filtersToParams, PAGE_SIZE, withFilter } from "./worklistFilters";

describe("worklist filters", () => {
  it("round-trip through the URL", () => {
    const filters = {
      ...DEFAULT_FILTERS,
      status: ["queued", "in_review"],
      assignee: "me" as const,
      modality: "DX",
      priority: "stat" as const,
      receivedFrom: "2026-01-02",
      receivedTo: "2026-02-03",
      sort: "created_at" as const,
      order: "desc" as const,
      page: 3,
    };
    expect(filtersFromParams(filtersToParams(filters))).toEqual(filters);
  });

  it("defaults leave the URL empty", () => {
    expect(filtersToParams(DEFAULT_FILTERS).toString()).toBe("");
  });

  it("malformed params fall back to defaults", () => {
    const parsed = filtersFromParams(new URLSearchParams("assignee=bob&priority=asap&sort=x;drop&page=-2&from=2026-13&modality=dx<script>"));
    expect(parsed.assignee).toBe("");
    expect(parsed.priority).toBe("");
    expect(parsed.sort).toBe("priority");
    expect(parsed.page).toBe(0);
    expect(parsed.receivedFrom).toBe("");
    expect(parsed.modality).toBe("DXSCRIPT");
  });

  it("map to the API query with paging", () => {
    const query = casesQuery({ ...DEFAULT_FILTERS, assignee: "unassigned", page: 2 });
    expect(query).toMatchObject({ assignee: "unassigned", limit: PAGE_SIZE, offset: 2 * PAGE_SIZE, sort: "priority" });
    expect(query.status).toBeUndefined();
    expect(query.modality).toBeUndefined();
  });

  it("changing a filter returns to the first page, changing the page does not", () => {
    const onPage4 = { ...DEFAULT_FILTERS, page: 4 };
    expect(withFilter(onPage4, "modality", "MR").page).toBe(0);
    expect(withFilter(onPage4, "page", 5).page).toBe(5);
  });
});
