import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { SliceRow, SliceTable } from "../api/types";
import type { OverlayState } from "../components/FindingsPanel";
import { ctFinding } from "../test/factories";
import { HeadCtViewer } from "./HeadCtViewer";

const LABELS = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"];

function slice(index: number, any: number, positive: string[] = []): SliceRow {
  return {
    index,
    instance_id: `i${index}`,
    position_mm: index * 5,
    probabilities: Object.fromEntries(LABELS.map((l) => [l, l === "any" ? any : l === "subdural" ? any * 0.8 : 0.01])),
    positive,
  };
}

const TABLE: SliceTable = {
  labels: LABELS,
  thresholds: Object.fromEntries(LABELS.map((l) => [l, 0.5])),
  spacing_mm: [5, 0.5, 0.5],
  slices: [slice(0, 0.05), slice(1, 0.6, ["any", "subdural"]), slice(2, 0.93, ["any", "subdural"]), slice(3, 0.2), slice(4, 0.1)],
};

let requested: string[];

function png(): Response {
  return new Response(new Uint8Array([137, 80, 78, 71]), { status: 200, headers: { "Content-Type": "image/png" } });
}

beforeEach(() => {
  requested = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (input: Request | string) => {
      const url = new URL(typeof input === "string" ? input : input.url, "http://localhost");
      requested.push(url.pathname + url.search);
      if (url.pathname.endsWith("/per-slice")) return new Response(JSON.stringify(TABLE), { status: 200, headers: { "Content-Type": "application/json" } });
      return png();
    }),
  );
  // jsdom decodes no images and has no 2D canvas: a 64×48 bitmap and a context that draws nothing.
  vi.stubGlobal("createImageBitmap", vi.fn(async () => ({ width: 64, height: 48, close: vi.fn() })));
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(function (this: HTMLCanvasElement) {
    return {
      drawImage: vi.fn(),
      clearRect: vi.fn(),
      getImageData: (_x: number, _y: number, w: number, h: number) => ({ data: new Uint8ClampedArray(w * h * 4) }),
      putImageData: vi.fn(),
    } as unknown as CanvasRenderingContext2D;
  } as unknown as typeof HTMLCanvasElement.prototype.getContext);
  vi.stubGlobal(
    "ResizeObserver",
    class {
      observe() {}
      disconnect() {}
    },
  );
});
afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

function renderViewer(overlay: OverlayState = { label: null, visible: true, opacity: 0.45 }) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const wrapper = ({ children }: { children: ReactNode }) => <QueryClientProvider client={client}>{children}</QueryClientProvider>;
  return render(<HeadCtViewer caseId="c1" finding={ctFinding()} overlay={overlay} />, { wrapper });
}

const base = "/api/cases/c1/findings/ct1/per-slice";

async function ready() {
  const root = screen.getByTestId("ct-viewport");
  await waitFor(() => expect(root.dataset.state).toBe("ready"));
  return root;
}

describe("HeadCtViewer", () => {
  it("starts on the slice with the highest any probability, under the brain window, with its heat map", async () => {
    renderViewer();
    const root = await ready();
    expect(root.dataset.slice).toBe("2");
    expect(requested).toContain(`${base}/2/image?window=brain`);
    const heat = screen.getByTestId("ct-heatmap-overlay");
    await waitFor(() => expect(heat.dataset.visible).toBe("true"));
    expect(heat.dataset.slice).toBe("2");
    expect(requested).toContain(`${base}/2/heatmap`);
    expect(heat.style.opacity).toBe("0.45");
    expect(screen.getByTestId("ct-slice-image").dataset.window).toBe("brain");
    expect(screen.getByRole("slider", { name: "Slice" })).toHaveValue("2");
    expect(screen.getByRole("img", { name: "Slice 3 of 5 (10.0 mm), Brain window" })).toBeInTheDocument();
  });

  it("lists the positive slices; choosing one goes there", async () => {
    renderViewer();
    await ready();
    const list = screen.getByRole("region", { name: "Slices with positive labels" });
    const buttons = within(list).getAllByRole("button");
    expect(buttons.map((b) => b.dataset.slice)).toEqual(["1", "2"]);
    expect(buttons[1]).toHaveAttribute("aria-current", "true");
    expect(buttons[0]).toHaveAccessibleName("Slice 2 of 5 (5.0 mm): any, subdural");
    fireEvent.click(buttons[0] as HTMLElement);
    await waitFor(() => expect(screen.getByTestId("ct-slice-image").dataset.slice).toBe("1"));
    expect(requested).toContain(`${base}/1/image?window=brain`);
    const thisSlice = screen.getByRole("list", { name: "Slice labels" });
    expect(within(thisSlice).getByRole("listitem", { name: "any 60.0% positive" })).toBeInTheDocument();
  });

  it("up/down step through the slices within the series; 1–3 choose the window", async () => {
    renderViewer();
    const root = await ready();
    fireEvent.keyDown(window, { key: "ArrowUp" });
    await waitFor(() => expect(root.dataset.slice).toBe("3"));
    fireEvent.keyDown(window, { key: "ArrowUp" });
    fireEvent.keyDown(window, { key: "ArrowUp" });
    await waitFor(() => expect(root.dataset.slice).toBe("4"));
    fireEvent.keyDown(window, { key: "ArrowDown" });
    await waitFor(() => expect(root.dataset.slice).toBe("3"));
    fireEvent.keyDown(window, { key: "3" });
    await waitFor(() => expect(screen.getByTestId("ct-slice-image").dataset.window).toBe("bone"));
    expect(requested).toContain(`${base}/3/image?window=bone`);
    expect(screen.getByRole("button", { name: /Bone/ })).toHaveAttribute("aria-pressed", "true");
    fireEvent.click(screen.getByRole("button", { name: /Subdural/ }));
    await waitFor(() => expect(screen.getByTestId("ct-slice-image").dataset.window).toBe("subdural"));
  });

  it("the slider chooses the slice; a slice seen before is not fetched again", async () => {
    renderViewer();
    const root = await ready();
    const slider = screen.getByRole("slider", { name: "Slice" });
    expect(slider).toHaveAttribute("aria-valuetext", "Slice 3 of 5 (10.0 mm)");
    fireEvent.change(slider, { target: { value: "0" } });
    await waitFor(() => expect(screen.getByTestId("ct-slice-image").dataset.slice).toBe("0"));
    fireEvent.change(slider, { target: { value: "2" } });
    await waitFor(() => expect(screen.getByTestId("ct-slice-image").dataset.slice).toBe("2"));
    expect(root.dataset.slice).toBe("2");
    expect(requested.filter((r) => r === `${base}/2/image?window=brain`)).toHaveLength(1);
    expect(requested.filter((r) => r === `${base}/2/heatmap`)).toHaveLength(1);
  });

  it("a hidden overlay hides the heat map", async () => {
    renderViewer({ label: null, visible: false, opacity: 0.45 });
    await ready();
    await act(async () => undefined);
    const heat = screen.getByTestId("ct-heatmap-overlay");
    expect(heat.dataset.visible).toBe("false");
    expect(heat.style.visibility).toBe("hidden");
  });

  it("a failed slice image shows the error and a retry", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async (input: Request | string) => {
        const url = new URL(typeof input === "string" ? input : input.url, "http://localhost");
        if (url.pathname.endsWith("/per-slice")) return new Response(JSON.stringify(TABLE), { status: 200, headers: { "Content-Type": "application/json" } });
        return new Response(JSON.stringify({ code: "slice_not_found", message: "no slice 2" }), { status: 404, headers: { "Content-Type": "application/json" } });
      }),
    );
    renderViewer();
    const root = screen.getByTestId("ct-viewport");
    await waitFor(() => expect(root.dataset.state).toBe("error"));
    expect(screen.getByRole("alert")).toHaveTextContent("slice_not_found");
    expect(screen.getByRole("button", { name: "Try again" })).toBeInTheDocument();
  });
});
