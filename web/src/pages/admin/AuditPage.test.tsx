import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AuditEntryOut } from "../../api/types";
import { AUDIT_PAGE_SIZE } from "./audit";
import { AuditPage } from "./AuditPage";
import { fakeApi, json, providers, type SentRequest } from "./fakeApi";

function entry(id: number, overrides: Partial<AuditEntryOut> = {}): AuditEntryOut {
  return {
    id,
    occurred_at: "2026-01-01T10:00:00Z",
    actor: "admin1",
    actor_role: "admin",
    action: "case.assigned",
    target_type: "case",
    target_id: "0f6d2a4e-1111-2222-3333-444455556666",
    outcome: "success",
    client_ip: "127.0.0.1",
    request_id: `req-${id}`,
    details: { assignee_to: "u2" },
    prev_hash: "0".repeat(64),
    entry_hash: "1".repeat(64),
    ...overrides,
  };
}

/** 120 entries, answered like the API: after after_id, at most limit. */
function listing(request: SentRequest) {
  const after = Number(request.query.get("after_id") ?? 0);
  const limit = Number(request.query.get("limit") ?? 100);
  const all = Array.from({ length: 120 }, (_, i) => entry(i + 1));
  return json(all.filter((e) => e.id > after).slice(0, limit));
}

const listed = (sent: SentRequest[]) => sent.filter((r) => r.path === "/api/audit");

afterEach(() => vi.unstubAllGlobals());

describe("AuditPage", () => {
  it("pages forward with the last shown id and back with the cursor before it", async () => {
    const sent = fakeApi({ "GET /api/audit": listing });
    render(<AuditPage />, { wrapper: providers("/admin/audit") });
    const table = await screen.findByRole("table", { name: "Audit entries" });
    await within(table).findByText(String(AUDIT_PAGE_SIZE));
    expect(listed(sent)[0]?.query.get("limit")).toBe(String(AUDIT_PAGE_SIZE + 1));
    expect(screen.getByRole("button", { name: "Previous page" })).toBeDisabled();

    fireEvent.click(screen.getByRole("button", { name: "Next page" }));
    await within(table).findByText(String(2 * AUDIT_PAGE_SIZE));
    expect(listed(sent).at(-1)?.query.get("after_id")).toBe(String(AUDIT_PAGE_SIZE));
    fireEvent.click(screen.getByRole("button", { name: "Next page" }));
    await within(table).findByText("120");
    expect(screen.getByRole("button", { name: "Next page" })).toBeDisabled();

    fireEvent.click(screen.getByRole("button", { name: "Previous page" }));
    await within(table).findByText(String(2 * AUDIT_PAGE_SIZE));
    expect(screen.queryByText("120")).toBeNull();
  });

  it("sends the filters of the URL and of the inputs (Case as target_id), back to the first page", async () => {
    const sent = fakeApi({ "GET /api/audit": listing });
    render(<AuditPage />, { wrapper: providers("/admin/audit?actor=admin1") });
    await screen.findByRole("table", { name: "Audit entries" });
    expect(listed(sent)[0]?.query.get("actor")).toBe("admin1");
    expect(screen.getByRole("textbox", { name: "Actor" })).toHaveValue("admin1");

    fireEvent.change(screen.getByRole("textbox", { name: "Case" }), { target: { value: " c-42 " } });
    fireEvent.change(screen.getByRole("textbox", { name: "Action" }), { target: { value: "case.updated" } });
    fireEvent.submit(screen.getByRole("form", { name: "Audit filters" }));
    await waitFor(() => expect(listed(sent).at(-1)?.query.get("target_id")).toBe("c-42"));
    const last = listed(sent).at(-1)?.query;
    expect(last?.get("action")).toBe("case.updated");
    expect(last?.get("actor")).toBe("admin1");
    expect(last?.get("after_id")).toBe("0");
  });

  it("typing applies the filters after a pause", async () => {
    const sent = fakeApi({ "GET /api/audit": listing });
    render(<AuditPage />, { wrapper: providers("/admin/audit") });
    fireEvent.change(screen.getByRole("textbox", { name: "Actor" }), { target: { value: "rad1" } });
    await waitFor(() => expect(listed(sent).at(-1)?.query.get("actor")).toBe("rad1"), { timeout: 2000 });
  });

  it("Verify chain says intact, or names the broken entry", async () => {
    let report = { ok: true, entries: 12, first_broken: null as number | null, reason: null as string | null };
    fakeApi({ "GET /api/audit": listing, "GET /api/audit/verify": () => json(report) });
    render(<AuditPage />, { wrapper: providers("/admin/audit") });
    fireEvent.click(screen.getByRole("button", { name: "Verify chain" }));
    await waitFor(() => expect(screen.getByRole("status")).toHaveTextContent("Audit chain intact: 12 entries verified."));

    report = { ok: false, entries: 4, first_broken: 4, reason: "content does not match its hash" };
    fireEvent.click(screen.getByRole("button", { name: "Verify chain" }));
    await waitFor(() => expect(screen.getByRole("status")).toHaveTextContent("BROKEN at entry 4: content does not match its hash"));
  });

  it("shows an API error with its code", async () => {
    fakeApi({ "GET /api/audit": () => json({ code: "forbidden", message: "admins only" }, 403) });
    render(<AuditPage />, { wrapper: providers("/admin/audit") });
    expect(await screen.findByRole("alert")).toHaveTextContent("forbidden: admins only");
  });
});
