import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { UserOut } from "../api/types";
import { fakeApi, json, providers } from "../pages/admin/fakeApi";
import { caseDetail } from "../test/factories";
import { assigneeOptions, CaseAdminControls, caseUpdateBody } from "./CaseAdminControls";

function user(id: string, username: string, overrides: Partial<UserOut> = {}): UserOut {
  return { id, username, role: "radiologist", full_name: null, is_active: true, created_at: "2026-01-01T00:00:00Z", ...overrides };
}

const users = [user("u1", "rad"), user("u2", "bea", { full_name: "Dr Bea" }), user("u3", "old", { is_active: false }), user("a1", "admin", { role: "admin" })];

afterEach(() => vi.unstubAllGlobals());

describe("caseUpdateBody", () => {
  const detail = caseDetail({ version: 7, priority: "routine", assignee: { id: "u1", username: "rad" } });

  it("is null while nothing differs from the case", () => {
    expect(caseUpdateBody(detail, {})).toBeNull();
    expect(caseUpdateBody(detail, { assigneeId: "u1", priority: "routine" })).toBeNull();
  });

  it("sends only what changed, with the version last seen; unassigning sends null", () => {
    expect(caseUpdateBody(detail, { assigneeId: "u2" })).toEqual({ version: 7, assignee_id: "u2" });
    expect(caseUpdateBody(detail, { assigneeId: "" })).toEqual({ version: 7, assignee_id: null });
    expect(caseUpdateBody(detail, { priority: "stat", assigneeId: "u1" })).toEqual({ version: 7, priority: "stat" });
  });
});

describe("assigneeOptions", () => {
  it("lists active radiologists by name and keeps a holder who no longer qualifies", () => {
    expect(assigneeOptions(users, caseDetail({ assignee: { id: "u1", username: "rad" } })).map((o) => o.label)).toEqual(["bea (Dr Bea)", "rad"]);
    expect(assigneeOptions(users, caseDetail({ assignee: { id: "u3", username: "old" } }))[0]).toEqual({ id: "u3", label: "old (not assignable)" });
  });
});

describe("CaseAdminControls", () => {
  it("saves a new assignee and priority, then reloads the case", async () => {
    const sent = fakeApi({
      "GET /api/users": () => json(users),
      "PATCH /api/cases/c1": () => json(caseDetail()),
    });
    const onChanged = vi.fn();
    render(<CaseAdminControls detail={caseDetail()} onChanged={onChanged} />, { wrapper: providers() });
    const save = screen.getByRole("button", { name: "Save assignment" });
    expect(save).toBeDisabled();
    await screen.findByRole("option", { name: "bea (Dr Bea)" });
    fireEvent.change(screen.getByRole("combobox", { name: "Assignee" }), { target: { value: "u2" } });
    fireEvent.change(screen.getByRole("combobox", { name: "Priority" }), { target: { value: "stat" } });
    fireEvent.click(save);
    await waitFor(() => expect(onChanged).toHaveBeenCalled());
    expect(sent.find((r) => r.path === "/api/users")?.query.get("role")).toBe("radiologist");
    expect(sent.find((r) => r.method === "PATCH")?.body).toEqual({ version: 3, assignee_id: "u2", priority: "stat" });
  });

  it("a stale version offers a reload and keeps the choice", async () => {
    fakeApi({
      "GET /api/users": () => json(users),
      "PATCH /api/cases/c1": () => json({ code: "stale_version", message: "the case changed since you loaded it; reload and try again" }, 409),
    });
    const onChanged = vi.fn();
    render(<CaseAdminControls detail={caseDetail()} onChanged={onChanged} />, { wrapper: providers() });
    fireEvent.change(screen.getByRole("combobox", { name: "Priority" }), { target: { value: "urgent" } });
    fireEvent.click(screen.getByRole("button", { name: "Save assignment" }));
    fireEvent.click(await screen.findByRole("button", { name: "Reload case" }));
    expect(onChanged).toHaveBeenCalledTimes(1);
    expect(screen.getByRole("combobox", { name: "Priority" })).toHaveValue("urgent");
    expect(screen.getByRole("button", { name: "Save assignment" })).toBeEnabled();
  });

  it("other refusals show their code and message", async () => {
    fakeApi({
      "GET /api/users": () => json(users),
      "PATCH /api/cases/c1": () => json({ code: "invalid_assignee", message: "assignee must be an active radiologist" }, 400),
    });
    render(<CaseAdminControls detail={caseDetail()} onChanged={vi.fn()} />, { wrapper: providers() });
    fireEvent.change(screen.getByRole("combobox", { name: "Assignee" }), { target: { value: "" } });
    fireEvent.click(screen.getByRole("button", { name: "Save assignment" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("invalid_assignee: assignee must be an active radiologist");
  });

  it("a signed-off case cannot be changed", () => {
    fakeApi({ "GET /api/users": () => json(users) });
    render(<CaseAdminControls detail={caseDetail({ status: "signed_off" })} onChanged={vi.fn()} />, { wrapper: providers() });
    expect(screen.getByRole("combobox", { name: "Assignee" })).toBeDisabled();
    expect(screen.getByRole("combobox", { name: "Priority" })).toBeDisabled();
    expect(screen.getByRole("button", { name: "Save assignment" })).toBeDisabled();
  });
});
