import { describe, expect, it } from "vitest";
import { gunzip, gzip, isGzip, readLabelHeader, withLabelVoxels } from "./nifti";
import { niftiFile } from "./testNifti";

const affine = [[-1.5, 0, 0, 10], [0, -1, 0, 20], [0, 0, 2, 30]];

describe("edited label map file", () => {
  it("keeps the template's header and grid and carries the new voxels", async () => {
    const template = niftiFile([2, 3, 4], affine, new Uint8Array(24));
    const voxels = Uint8Array.from({ length: 24 }, (_, i) => i % 4);
    const file = withLabelVoxels(template, voxels);
    expect(readLabelHeader(file)).toEqual({ dims: [2, 3, 4], voxOffset: 352, littleEndian: true });
    expect(file.subarray(0, 112)).toEqual(template.subarray(0, 112));
    expect(file.subarray(120, 352)).toEqual(template.subarray(120, 352)); // sform kept
    expect(file.subarray(352)).toEqual(voxels);
    const round = await gunzip(await gzip(file));
    expect(isGzip(await gzip(file))).toBe(true);
    expect(round).toEqual(file);
  });

  it("refuses a template that is not a 3-D uint8 NIfTI-1 and voxels of another grid", () => {
    const template = niftiFile([2, 3, 4], affine, new Uint8Array(24));
    expect(() => withLabelVoxels(template, new Uint8Array(23))).toThrow(/grid of 24/);
    expect(() => readLabelHeader(niftiFile([2, 3, 4], affine, new Float32Array(24)))).toThrow(/uint8/);
    expect(() => readLabelHeader(niftiFile([2, 3, 4, 2], affine, new Uint8Array(48)))).toThrow(/three dimensions/);
    expect(() => readLabelHeader(new Uint8Array(400))).toThrow(/NIfTI-1/);
  });

  it("gunzip passes plain bytes through", async () => {
    const plain = Uint8Array.from([1, 2, 3]);
    expect(await gunzip(plain)).toBe(plain);
  });
});
