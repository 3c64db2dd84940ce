/** Test helper: a minimal little-endian NIfTI-1 file (uint8 or float32) with an sform. */
export function niftiFile(
  dims: readonly number[],
  affine: readonly (readonly number[])[],
  data: Uint8Array | Float32Array,
): Uint8Array {
  const voxOffset = 352;
  const out = new Uint8Array(voxOffset + data.byteLength);
  const view = new DataView(out.buffer);
  view.setInt32(0, 348, true);
  view.setInt16(40, dims.length, true);
  dims.forEach((d, i) => view.setInt16(42 + 2 * i, d, true));
  for (let i = dims.length; i < 7; i++) view.setInt16(42 + 2 * i, 1, true);
  const float = data instanceof Float32Array;
  view.setInt16(70, float ? 16 : 2, true);
  view.setInt16(72, float ? 32 : 8, true);
  view.setFloat32(76, 1, true);
  for (let i = 0; i < 3; i++) {
    const row = affine[i] ?? [];
    view.setFloat32(76 + 4 * (i + 1), Math.hypot(affine[0]?.[i] ?? 0, affine[1]?.[i] ?? 0, affine[2]?.[i] ?? 0), true);
    for (let j = 0; j < 4; j++) view.setFloat32(280 + 16 * i + 4 * j, row[j] ?? 0, true);
  }
  view.setFloat32(108, voxOffset, true);
  view.setFloat32(112, 1, true);
  view.setInt16(254, 1, true); // sform_code: scanner
  out.set([0x6e, 0x2b, 0x31, 0], 344); // "n+1\0"
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), voxOffset);
  return out;
}
