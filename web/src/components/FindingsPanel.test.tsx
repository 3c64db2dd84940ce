import { fireEvent, render, screen, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { ctFinding, finding } from "../test/factories";
import { FindingsPanel, type OverlayState } from "./FindingsPanel";

const overlay: OverlayState = { label: "Cardiomegaly", visible: true, opacity: 0.4 };

describe("FindingsPanel", () => {
  it("lists positives first, highlighted, with the threshold marked on each bar", () => {
    render(<FindingsPanel finding={finding()} overlay={overlay} onOverlay={() => undefined} />);
    const items = within(screen.getByRole("list", { name: "Labels" })).getAllByRole("button");
    expect(items.map((b) => b.dataset.label)).toEqual(["Cardiomegaly", "Effusion", "Atelectasis"]);
    expect(items[0]).toHaveAccessibleName("Cardiomegaly 90.0% positive");
    expect(items[1]?.dataset.positive).toBe("false");
    expect(items[1]?.querySelector("[title='threshold 60.0%']")).not.toBeNull();
  });

  it("choosing a label shows its heat map; the checkbox and slider change the overlay", () => {
    const onOverlay = vi.fn();
    render(<FindingsPanel finding={finding()} overlay={{ ...overlay, visible: false }} onOverlay={onOverlay} />);
    fireEvent.click(screen.getByRole("button", { name: /^Effusion/ }));
    expect(onOverlay).toHaveBeenLastCalledWith({ label: "Effusion", visible: true, opacity: 0.4 });
    fireEvent.click(screen.getByRole("checkbox", { name: /Show heat map/ }));
    expect(onOverlay).toHaveBeenLastCalledWith({ label: "Cardiomegaly", visible: true, opacity: 0.4 });
    fireEvent.change(screen.getByRole("slider", { name: "Overlay opacity" }), { target: { value: "0.8" } });
    expect(onOverlay).toHaveBeenLastCalledWith({ label: "Cardiomegaly", visible: false, opacity: 0.8 });
  });

  it("a label without a heat map cannot be chosen", () => {
    render(<FindingsPanel finding={finding({ cam_labels: ["Cardiomegaly"] })} overlay={overlay} onOverlay={() => undefined} />);
    expect(screen.getByRole("button", { name: /^Atelectasis/ })).toBeDisabled();
  });

  it("a head CT finding lists its study-level labels with thresholds; they are not heat map choices", () => {
    render(<FindingsPanel finding={ctFinding()} overlay={{ label: null, visible: true, opacity: 0.4 }} onOverlay={() => undefined} />);
    const list = screen.getByRole("list", { name: "Labels" });
    expect(within(list).queryAllByRole("button")).toHaveLength(0);
    const items = within(list).getAllByRole("listitem");
    expect(items.map((i) => i.dataset.label)).toEqual(["any", "subdural", "subarachnoid", "intraparenchymal", "intraventricular", "epidural"]);
    expect(items[0]).toHaveAccessibleName("any 91.0% positive");
    expect(items[2]?.querySelector("[title='threshold 50.0%']")).not.toBeNull();
    expect(screen.getByRole("checkbox", { name: /Show heat map \(any, this slice\)/ })).toBeChecked();
    expect(screen.getByText(/Study level/)).toBeInTheDocument();
  });
});
