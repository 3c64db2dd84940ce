import { render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeApi, json, providers } from "./fakeApi";
import { ModelsPage } from "./ModelsPage";

afterEach(() => vi.unstubAllGlobals());

describe("ModelsPage", () => {
  it("lists the served networks, synthetic ones with a SYNTHETIC badge and the warning", async () => {
    fakeApi({
      "GET /api/models": () =>
        json([
          {
            name: "cxr_net",
            ready: true,
            model_version: "2026.01.1",
            training_run_id: "run-7",
            synthetic: true,
            warning: "Synthetic demo model trained on synthetic data",
            parameters: { labels: "Atelectasis,Cardiomegaly", synthetic_data: "true" },
          },
          { name: "brats_net", ready: false, model_version: null, training_run_id: null, synthetic: false, warning: null, parameters: {} },
        ]),
    });
    render(<ModelsPage />, { wrapper: providers() });
    const table = await screen.findByRole("table", { name: "Served models" });
    const [cxr, brats] = within(table).getAllByRole("row").slice(1);
    expect(cxr).toHaveTextContent("cxr_net");
    expect(cxr).toHaveTextContent("2026.01.1");
    expect(cxr).toHaveTextContent("run-7");
    expect(within(cxr as HTMLElement).getByText("SYNTHETIC")).toBeInTheDocument();
    expect(cxr).toHaveTextContent("Synthetic demo model trained on synthetic data");
    expect(brats).toHaveTextContent("not ready");
    expect(within(brats as HTMLElement).queryByText("SYNTHETIC")).toBeNull();
  });

  it("a 503 from Triton shows the error, not a blank page", async () => {
    fakeApi({
      "GET /api/models": () => json({ code: "inference_unavailable", message: "Triton at 127.0.0.1:8001 is not reachable or not ready" }, 503),
    });
    render(<ModelsPage />, { wrapper: providers() });
    expect(await screen.findByRole("alert")).toHaveTextContent("inference_unavailable: Triton at 127.0.0.1:8001 is not reachable or not ready");
    expect(screen.queryByRole("table")).toBeNull();
  });
});
