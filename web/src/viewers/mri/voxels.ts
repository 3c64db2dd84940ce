/** Voxel bookkeeping between the stored NIfTI grid and what NiiVue works in.
 *
 * NiiVue keeps a volume's voxels in file order but its drawing bitmap in "RAS order": the
 * file's axes permuted and flipped so that x runs to the patient's Right, y Anterior, z
 * Superior (``NVImage.permRAS``). The server wants a mask in the stored file order (its
 * affine may be flipped or permuted, e.g. diag(-1.5, -1, 2)), so a drawing is converted back
 * here, by the same arithmetic as NiiVue's ``calculateRAS`` (``img2RASstep``/``img2RASstart``).
 */

export type Triple = [number, number, number];

/** How a RAS-ordered bitmap's axes map onto the native voxel array. */
export interface RasLayout {
  /** Native dimensions (i, j, k) of the stored grid. */
  dims: Triple;
  /** Dimensions of the RAS-ordered bitmap (x, y, z). */
  dimsRAS: Triple;
  /** Native flat-index step for one voxel along RAS x, y, z (negative when flipped). */
  step: Triple;
  /** Native flat-index offset of RAS voxel 0 contributed by each RAS axis. */
  start: Triple;
}

/** The layout of a grid of native ``dims`` whose NiiVue ``permRAS`` is ``perm`` (1-based
 * native axis per RAS axis, negative when that axis runs the other way). */
export function rasLayout(perm: readonly number[], dims: Triple): RasLayout {
  const axes = [0, 1, 2].map((p) => Math.abs(perm[p] ?? p + 1) - 1);
  if ([...axes].sort().join() !== "0,1,2") throw new Error(`not a permutation of the axes: ${perm.join(",")}`);
  const inStep: Triple = [1, dims[0], dims[0] * dims[1]];
  const dimsRAS = axes.map((a) => dims[a] as number) as Triple;
  const step = axes.map((a) => inStep[a] as number) as Triple;
  const start: Triple = [0, 0, 0];
  for (const p of [0, 1, 2] as const) {
    if ((perm[p] ?? 1) < 0) {
      start[p] = step[p] * (dimsRAS[p] - 1);
      step[p] = -step[p];
    }
  }
  return { dims, dimsRAS, step, start };
}

function voxelCount(dims: Triple): number {
  return dims[0] * dims[1] * dims[2];
}

/** A RAS-ordered bitmap (NiiVue's drawing) rewritten in native voxel order. */
export function rasToNative(ras: Uint8Array, layout: RasLayout): Uint8Array {
  const n = voxelCount(layout.dims);
  if (ras.length !== n) throw new Error(`drawing has ${ras.length} voxels, the grid ${n}`);
  const native = new Uint8Array(n);
  const [nx, ny, nz] = layout.dimsRAS;
  const [sx, sy, sz] = layout.step;
  const [ox, oy, oz] = layout.start;
  let r = 0;
  for (let z = 0; z < nz; z++) {
    const zi = oz + z * sz;
    for (let y = 0; y < ny; y++) {
      const yi = zi + oy + y * sy;
      for (let x = 0; x < nx; x++) native[yi + ox + x * sx] = ras[r++] as number;
    }
  }
  return native;
}

/** A native-order voxel array rewritten in RAS order (the inverse of ``rasToNative``). */
export function nativeToRas(native: ArrayLike<number>, layout: RasLayout): Uint8Array {
  const n = voxelCount(layout.dims);
  if (native.length < n) throw new Error(`volume has ${native.length} voxels, the grid ${n}`);
  const ras = new Uint8Array(n);
  const [nx, ny, nz] = layout.dimsRAS;
  const [sx, sy, sz] = layout.step;
  const [ox, oy, oz] = layout.start;
  let r = 0;
  for (let z = 0; z < nz; z++) {
    const zi = oz + z * sz;
    for (let y = 0; y < ny; y++) {
      const yi = zi + oy + y * sy;
      for (let x = 0; x < nx; x++) ras[r++] = native[yi + ox + x * sx] as number;
    }
  }
  return ras;
}

export interface Window {
  min: number;
  max: number;
}

const LOW_PERCENTILE = 0.005;
const HIGH_PERCENTILE = 0.995;
const MAX_SAMPLES = 262_144;

/** A display window for one channel (``length`` voxels from ``offset`` of ``values``): the
 * 0.5th to 99.5th percentile of its finite non-zero voxels (the background of skull-stripped
 * MRI is 0), as the server's ``volume_window``; all finite voxels when none is non-zero; at
 * least 1 wide. Large channels are sampled at a regular stride. */
export function channelWindow(values: ArrayLike<number>, offset: number, length: number): Window {
  const stride = Math.max(1, Math.floor(length / MAX_SAMPLES));
  const foreground: number[] = [];
  const all: number[] = [];
  for (let i = offset; i < offset + length; i += stride) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) continue;
    all.push(v);
    if (v !== 0) foreground.push(v);
  }
  const sample = Float64Array.from(foreground.length ? foreground : all).sort();
  if (sample.length === 0) return { min: 0, max: 1 };
  const at = (q: number) => {
    const pos = q * (sample.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, sample.length - 1);
    return (sample[lo] as number) + ((sample[hi] as number) - (sample[lo] as number)) * (pos - lo);
  };
  const min = at(LOW_PERCENTILE);
  const max = Math.max(at(HIGH_PERCENTILE), min + 1);
  return { min, max };
}
