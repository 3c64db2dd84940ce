// A small PNG reader for the screenshots Chromium makes (8-bit RGB/RGBA/grey, not
// interlaced), and the pixel measures the scenarios compare them with.
//
// Why screenshots and not canvas reads: both viewers draw with WebGL, whose drawing buffer
// is cleared after each frame unless the app asks for preserveDrawingBuffer, so
// canvas.toDataURL() / drawImage() may read back a blank buffer. A screenshot of the
// viewport element is what the compositor shows on screen — image, overlays and all —
// whatever the canvases' contexts are.
import { inflateSync } from "node:zlib";

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHANNELS = { 0: 1, 2: 3, 4: 2, 6: 4 };

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/** Decodes PNG bytes into { width, height, rgba: Uint8Array } (alpha 255 when absent). */
export function decodePng(buffer) {
  if (!buffer.subarray(0, 8).equals(SIGNATURE)) throw new Error("not a PNG");
  let offset = 8;
  let width = 0;
  let height = 0;
  let colorType = 0;
  const idat = [];
  while (offset < buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString("ascii", offset + 4, offset + 8);
    const data = buffer.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8];
      colorType = data[9];
      if (depth !== 8 || !(colorType in CHANNELS) || data[12] !== 0)
        throw new Error(`unsupported PNG (depth ${depth}, colour type ${colorType}, interlace ${data[12]})`);
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    offset += 12 + length;
  }
  const channels = CHANNELS[colorType];
  const stride = width * channels;
  const raw = inflateSync(Buffer.concat(idat));
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = y * stride;
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? pixels[out + x - channels] : 0;
      const up = y > 0 ? pixels[out - stride + x] : 0;
      const upLeft = y > 0 && x >= channels ? pixels[out - stride + x - channels] : 0;
      const value = line[x];
      let decoded;
      if (filter === 0) decoded = value;
      else if (filter === 1) decoded = value + left;
      else if (filter === 2) decoded = value + up;
      else if (filter === 3) decoded = value + ((left + up) >> 1);
      else if (filter === 4) decoded = value + paeth(left, up, upLeft);
      else throw new Error(`bad PNG filter ${filter}`);
      pixels[out + x] = decoded & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const p = i * channels;
    if (channels >= 3) {
      rgba[i * 4] = pixels[p];
      rgba[i * 4 + 1] = pixels[p + 1];
      rgba[i * 4 + 2] = pixels[p + 2];
    } else {
      rgba.fill(pixels[p], i * 4, i * 4 + 3);
    }
    rgba[i * 4 + 3] = channels === 4 ? pixels[p + 3] : channels === 2 ? pixels[p + 1] : 255;
  }
  return { width, height, rgba };
}

/** Brightness statistics of an image: mean and standard deviation of the luminance, the
 * fraction of pixels brighter than near-black, and the fraction with colour (R≠G≠B). */
export function imageStats({ width, height, rgba }) {
  const n = width * height;
  let sum = 0;
  let sumSq = 0;
  let lit = 0;
  let coloured = 0;
  for (let i = 0; i < n; i++) {
    const r = rgba[i * 4];
    const g = rgba[i * 4 + 1];
    const b = rgba[i * 4 + 2];
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    sum += y;
    sumSq += y * y;
    if (y > 16) lit++;
    if (Math.max(Math.abs(r - g), Math.abs(g - b), Math.abs(r - b)) > 24) coloured++;
  }
  const mean = sum / n;
  return {
    width,
    height,
    mean: +mean.toFixed(2),
    std: +Math.sqrt(Math.max(0, sumSq / n - mean * mean)).toFixed(2),
    litFraction: +(lit / n).toFixed(4),
    colouredFraction: +(coloured / n).toFixed(4),
  };
}

/** The fraction of pixels whose largest channel difference exceeds ``tolerance`` (the two
 * images must have the same size). */
export function changedFraction(a, b, tolerance = 12) {
  if (a.width !== b.width || a.height !== b.height) return 1;
  const n = a.width * a.height;
  let changed = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.max(
      Math.abs(a.rgba[i * 4] - b.rgba[i * 4]),
      Math.abs(a.rgba[i * 4 + 1] - b.rgba[i * 4 + 1]),
      Math.abs(a.rgba[i * 4 + 2] - b.rgba[i * 4 + 2]),
    );
    if (d > tolerance) changed++;
  }
  return +(changed / n).toFixed(4);
}
