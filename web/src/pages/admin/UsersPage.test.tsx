import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { UserOut } from "../../api/types";
import { fakeApi, json, providers } from "./fakeApi";
import { UsersPage } from "./UsersPage";

function user(id: string, username: string, overrides: Partial<UserOut> = {}): UserOut {
  return { id, username, role: "radiologist", full_name: null, is_active: true, created_at: "2026-01-01T00:00:00Z", ...overrides };
}

const me = user("a1", "boss", { role: "admin" });
const users = [me, user("r1", "rad1"), user("r2", "rad2", { is_active: false })];

vi.mock("../../auth/AuthProvider", () => ({ useAuth: () => ({ user: me }) }));

afterEach(() => vi.unstubAllGlobals());

describe("UsersPage", () => {
  it("lists users with a role select and an activate or deactivate button each", async () => {
    const sent = fakeApi({
      "GET /api/users": () => json(users),
      "PATCH /api/users/r1": () => json({ ...users[1], is_active: false }),
      "PATCH /api/users/r2": () => json({ ...users[2], role: "mlops" }),
    });
    render(<UsersPage />, { wrapper: providers() });
    expect(await screen.findByRole("combobox", { name: "Role of rad1" })).toHaveValue("radiologist");
    expect(screen.getByRole("button", { name: "Activate rad2" })).toBeInTheDocument();
    fireEvent.click(screen.getByRole("button", { name: "Deactivate rad1" }));
    await waitFor(() => expect(sent.some((r) => r.method === "PATCH")).toBe(true));
    expect(sent.find((r) => r.method === "PATCH")).toMatchObject({ path: "/api/users/r1", body: { is_active: false } });
    fireEvent.change(screen.getByRole("combobox", { name: "Role of rad2" }), { target: { value: "mlops" } });
    await waitFor(() => expect(sent.filter((r) => r.method === "PATCH")).toHaveLength(2));
    expect(sent.filter((r) => r.method === "PATCH")[1]).toMatchObject({ path: "/api/users/r2", body: { role: "mlops" } });
  });

  it("shows the API's refusal when an admin would lock themselves out", async () => {
    fakeApi({
      "GET /api/users": () => json(users),
      "PATCH /api/users/a1": () => json({ code: "self_lockout", message: "admins cannot demote or disable their own account" }, 400),
    });
    render(<UsersPage />, { wrapper: providers() });
    fireEvent.click(await screen.findByRole("button", { name: "Deactivate boss" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("boss was not changed");
    expect(alert).toHaveTextContent("self_lockout: admins cannot demote or disable their own account");
  });

  it("creates a user after checking the form, then clears it", async () => {
    const sent = fakeApi({
      "GET /api/users": () => json(users),
      "POST /api/users": () => json(user("n1", "newrad", { role: "mlops" }), 201),
    });
    render(<UsersPage />, { wrapper: providers() });
    fireEvent.change(screen.getByLabelText("Username"), { target: { value: "newrad" } });
    fireEvent.change(screen.getByLabelText("Full name"), { target: { value: "New Rad" } });
    fireEvent.change(screen.getByRole("combobox", { name: "Role" }), { target: { value: "mlops" } });
    fireEvent.change(screen.getByLabelText("Password"), { target: { value: "short" } });
    fireEvent.click(screen.getByRole("button", { name: "Create user" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("at least 12 characters");
    expect(sent.some((r) => r.method === "POST")).toBe(false);

    fireEvent.change(screen.getByLabelText("Password"), { target: { value: "a-long-enough-password" } });
    fireEvent.click(screen.getByRole("button", { name: "Create user" }));
    expect(await screen.findByText("Created newrad (MLOps).")).toBeInTheDocument();
    expect(sent.find((r) => r.method === "POST")?.body).toEqual({
      username: "newrad",
      full_name: "New Rad",
      role: "mlops",
      password: "a-long-enough-password",
    });
    expect(screen.getByLabelText("Username")).toHaveValue("");
  });

  it("shows a refused creation with its code", async () => {
    fakeApi({
      "GET /api/users": () => json(users),
      "POST /api/users": () => json({ code: "username_taken", message: "username already exists" }, 409),
    });
    render(<UsersPage />, { wrapper: providers() });
    fireEvent.change(screen.getByLabelText("Username"), { target: { value: "rad1" } });
    fireEvent.change(screen.getByLabelText("Password"), { target: { value: "a-long-enough-password" } });
    fireEvent.click(screen.getByRole("button", { name: "Create user" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("username_taken: username already exists");
    expect(screen.getByLabelText("Username")).toHaveValue("rad1");
  });
});
