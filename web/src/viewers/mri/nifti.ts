/** Writing an edited label map as a NIfTI-1 file on the stored grid.
 *
 * The server's own label map (``nifti/labels``) is the template: its header already carries
 * the stored grid (shape, affine, units), so only the voxels are replaced. That keeps the
 * upload on exactly the grid the server compares it with, whatever NiiVue did to display it.
 */
import type { Triple } from "./voxels";

const NIFTI1_HEADER_BYTES = 348;
const DT_UINT8 = 2;

/** True when ``bytes`` start with the gzip magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

async function transform(bytes: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const source = new Response(bytes.slice()).body;
  if (!source) throw new Error("no stream to read");
  return new Uint8Array(await new Response(source.pipeThrough(stream)).arrayBuffer());
}

export async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  return isGzip(bytes) ? transform(bytes, new DecompressionStream("gzip")) : bytes;
}

export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  return transform(bytes, new CompressionStream("gzip"));
}

export interface LabelHeader {
  dims: Triple;
  voxOffset: number;
  littleEndian: boolean;
}

/** The grid and data offset of an uncompressed NIfTI-1 uint8 label map; throws when the
 * file is not one (another version, data type or dimensionality). */
export function readLabelHeader(file: Uint8Array): LabelHeader {
  if (file.length < NIFTI1_HEADER_BYTES) throw new Error("label map: shorter than a NIfTI-1 header");
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const littleEndian = view.getInt32(0, true) === NIFTI1_HEADER_BYTES;
  if (!littleEndian && view.getInt32(0, false) !== NIFTI1_HEADER_BYTES) throw new Error("label map: not a NIfTI-1 file");
  const rank = view.getInt16(40, littleEndian);
  const dims = [1, 2, 3].map((d) => view.getInt16(40 + 2 * d, littleEndian)) as Triple;
  for (let d = 4; d <= rank && d <= 7; d++) {
    if (view.getInt16(40 + 2 * d, littleEndian) > 1) throw new Error("label map: more than three dimensions");
  }
  const datatype = view.getInt16(70, littleEndian);
  if (datatype !== DT_UINT8) throw new Error(`label map: data type ${datatype}, expected uint8 (${DT_UINT8})`);
  const voxOffset = Math.round(view.getFloat32(108, littleEndian));
  if (voxOffset < NIFTI1_HEADER_BYTES || voxOffset > file.length) throw new Error("label map: bad data offset");
  return { dims, voxOffset, littleEndian };
}

/** An uncompressed NIfTI-1 file: ``template``'s header (and extensions) with ``voxels``
 * (native order, one byte each) as its data, unscaled. */
export function withLabelVoxels(template: Uint8Array, voxels: Uint8Array): Uint8Array {
  const header = readLabelHeader(template);
  const expected = header.dims[0] * header.dims[1] * header.dims[2];
  if (voxels.length !== expected) throw new Error(`label map: ${voxels.length} voxels for a grid of ${expected}`);
  const out = new Uint8Array(header.voxOffset + voxels.length);
  out.set(template.subarray(0, header.voxOffset));
  out.set(voxels, header.voxOffset);
  const view = new DataView(out.buffer);
  view.setFloat32(112, 1, header.littleEndian); // scl_slope
  view.setFloat32(116, 0, header.littleEndian); // scl_inter
  return out;
}
