import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ctFinding, finding } from "../test/factories";
import { DecisionForm } from "./DecisionForm";

function wrapper({ children }: { children: ReactNode }) {
  const client = new QueryClient({ defaultOptions: { mutations: { retry: false } } });
  return <QueryClientProvider client={client}>{children}</QueryClientProvider>;
}

interface Sent {
  url: string;
  body: unknown;
}

let sent: Sent[];
let answer: () => Response;

beforeEach(() => {
  sent = [];
  answer = () => new Response(JSON.stringify({ id: "d2" }), { status: 201, headers: { "Content-Type": "application/json" } });
  vi.stubGlobal(
    "fetch",
    vi.fn(async (input: Request) => {
      sent.push({ url: input.url, body: await input.clone().json() });
      return answer();
    }),
  );
});
afterEach(() => vi.unstubAllGlobals());

function renderForm(onDecided = vi.fn(), onReload = vi.fn(), readOnly = false) {
  render(<DecisionForm caseId="c1" finding={finding()} readOnly={readOnly} onDecided={onDecided} onReload={onReload} />, { wrapper });
  return { onDecided, onReload };
}

describe("DecisionForm", () => {
  it("accept posts the decision for this finding", async () => {
    const { onDecided } = renderForm();
    fireEvent.click(screen.getByRole("button", { name: "Accept" }));
    await waitFor(() => expect(onDecided).toHaveBeenCalled());
    expect(sent).toHaveLength(1);
    expect(sent[0]?.url).toMatch(/\/api\/cases\/c1\/findings\/f1\/decisions$/);
    expect(sent[0]?.body).toMatchObject({ action: "accept", supersedes: null, labels: null });
  });

  it("reject asks for a reason before anything is sent", async () => {
    const { onDecided } = renderForm();
    fireEvent.click(screen.getByRole("button", { name: "Reject" }));
    fireEvent.click(screen.getByRole("button", { name: "Confirm rejection" }));
    expect(await screen.findByText("A rejection needs a reason.")).toBeInTheDocument();
    expect(sent).toHaveLength(0);
    fireEvent.change(screen.getByRole("textbox", { name: "Reason" }), { target: { value: "motion artefact" } });
    fireEvent.click(screen.getByRole("button", { name: "Confirm rejection" }));
    await waitFor(() => expect(onDecided).toHaveBeenCalled());
    expect(sent[0]?.body).toMatchObject({ action: "reject", reason: "motion artefact" });
  });

  it("an edit sends the corrected label set", async () => {
    renderForm();
    fireEvent.click(screen.getByRole("button", { name: "Edit" }));
    expect(screen.getByRole("checkbox", { name: "Cardiomegaly" })).toBeChecked();
    fireEvent.click(screen.getByRole("checkbox", { name: "Effusion" }));
    fireEvent.change(screen.getByRole("textbox", { name: "Reason" }), { target: { value: "small effusion" } });
    fireEvent.click(screen.getByRole("button", { name: "Save correction" }));
    await waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]?.body).toMatchObject({ action: "edit", labels: ["Cardiomegaly", "Effusion"] });
  });

  it("an edit of a head CT finding offers its six labels and sends them in the model's order", async () => {
    render(<DecisionForm caseId="c1" finding={ctFinding()} readOnly={false} onDecided={vi.fn()} onReload={vi.fn()} />, { wrapper });
    fireEvent.click(screen.getByRole("button", { name: "Edit" }));
    const boxes = screen.getAllByRole("checkbox");
    expect(boxes.map((b) => b.parentElement?.textContent)).toEqual(["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]);
    expect(boxes.filter((b) => (b as HTMLInputElement).checked).map((b) => b.parentElement?.textContent)).toEqual(["any", "subdural"]);
    fireEvent.click(screen.getByRole("checkbox", { name: "subdural" }));
    fireEvent.click(screen.getByRole("checkbox", { name: "epidural" }));
    fireEvent.change(screen.getByRole("textbox", { name: "Reason" }), { target: { value: "lens-shaped: epidural, not subdural" } });
    fireEvent.click(screen.getByRole("button", { name: "Save correction" }));
    await waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]?.url).toMatch(/\/api\/cases\/c1\/findings\/ct1\/decisions$/);
    expect(sent[0]?.body).toMatchObject({ action: "edit", labels: ["any", "epidural"], reason: "lens-shaped: epidural, not subdural" });
  });

  it("a 409 offers a reload and keeps the typed reason", async () => {
    answer = () =>
      new Response(JSON.stringify({ code: "stale_decision", message: "the finding changed" }), {
        status: 409,
        headers: { "Content-Type": "application/json" },
      });
    const { onDecided, onReload } = renderForm();
    fireEvent.click(screen.getByRole("button", { name: "Reject" }));
    fireEvent.change(screen.getByRole("textbox", { name: "Reason" }), { target: { value: "keep me" } });
    fireEvent.click(screen.getByRole("button", { name: "Confirm rejection" }));
    fireEvent.click(await screen.findByRole("button", { name: "Reload" }));
    expect(onReload).toHaveBeenCalled();
    expect(onDecided).not.toHaveBeenCalled();
    expect(screen.getByRole("textbox", { name: "Reason" })).toHaveValue("keep me");
  });

  it("read-only shows the decision and no buttons", () => {
    renderForm(vi.fn(), vi.fn(), true);
    expect(screen.queryByRole("button", { name: "Accept" })).toBeNull();
  });
});
