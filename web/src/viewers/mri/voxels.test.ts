import { NVImage } from "@niivue/niivue";
import { describe, expect, it } from "vitest";
import { niftiFile } from "./testNifti";
import { type Triple, channelWindow, nativeToRas, rasLayout, rasToNative } from "./voxels";

const dims: Triple = [2, 3, 4];
const native = Uint8Array.from({ length: 24 }, (_, n) => n);
const nativeAt = (i: number, j: number, k: number) => i + dims[0] * j + dims[0] * dims[1] * k;

describe("RAS layout of NiiVue's drawing", () => {
  it("is the native order when the affine is already RAS", () => {
    const layout = rasLayout([1, 2, 3], dims);
    expect(layout).toEqual({ dims, dimsRAS: [2, 3, 4], step: [1, 2, 6], start: [0, 0, 0] });
    expect(nativeToRas(native, layout)).toEqual(native);
  });

  it("reverses a flipped axis (affine diag(-1.5, -1, 2))", () => {
    const layout = rasLayout([-1, -2, 3], dims);
    const ras = nativeToRas(native, layout);
    // RAS voxel (x, y, z) is native voxel (1 - x, 2 - y, z)
    expect(ras[0]).toBe(native[nativeAt(1, 2, 0)]);
    expect(ras[1 + 2 * 1 + 6 * 3]).toBe(native[nativeAt(0, 1, 3)]);
    expect(rasToNative(ras, layout)).toEqual(native);
  });

  it("permutes and flips axes (native j runs Right, i runs Posterior)", () => {
    const layout = rasLayout([2, -1, 3], dims);
    expect(layout.dimsRAS).toEqual([3, 2, 4]);
    const ras = nativeToRas(native, layout);
    // RAS (x, y, z) = native (i = 1 - y, j = x, k = z)
    for (const [x, y, z] of [[0, 0, 0], [2, 1, 3], [1, 0, 2]] as const) {
      expect(ras[x + 3 * y + 6 * z]).toBe(native[nativeAt(1 - y, x, z)]);
    }
    expect(rasToNative(ras, layout)).toEqual(native);
  });

  it("refuses a drawing of another size and a non-permutation", () => {
    expect(() => rasToNative(new Uint8Array(5), rasLayout([1, 2, 3], dims))).toThrow(/voxels/);
    expect(() => rasLayout([1, 1, 3], dims)).toThrow(/permutation/);
  });

  it.each([
    ["flipped diagonal", [[-1.5, 0, 0, 0], [0, -1, 0, 0], [0, 0, 2, 0]]],
    ["permuted", [[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0]]],
    ["LPS-like", [[-1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0]]],
  ])("agrees with NiiVue's own img2RAS for a %s affine", async (_, affine) => {
    const image = await NVImage.loadFromUrl({ url: niftiFile(dims, affine, native).slice().buffer, name: "labels.nii" });
    const layout = rasLayout(image.permRAS ?? [], dims);
    expect(layout.step).toEqual(image.img2RASstep);
    expect(layout.start).toEqual(image.img2RASstart);
    expect(layout.dimsRAS).toEqual(image.dimsRAS?.slice(1));
  });
});

describe("channel window", () => {
  it("spans the non-zero voxels' 0.5th to 99.5th percentile of one channel", () => {
    const values = new Float32Array(2 * 1000);
    for (let i = 0; i < 1000; i++) values[1000 + i] = i % 2 ? 0 : 100 + (i / 2) * 0.2; // 100..199.8
    const window = channelWindow(values, 1000, 1000);
    expect(window.min).toBeCloseTo(100.5, 1);
    expect(window.max).toBeCloseTo(199.3, 1);
  });

  it("is at least 1 wide and uses all voxels when all are zero", () => {
    expect(channelWindow(new Float32Array(10), 0, 10)).toEqual({ min: 0, max: 1 });
  });

  it("skips non-finite voxels", () => {
    const w = channelWindow(Float32Array.from([NaN, Infinity, 5, 5, 5]), 0, 5);
    expect(w).toEqual({ min: 5, max: 6 });
  });
});
