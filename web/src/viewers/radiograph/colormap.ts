/** The heat map colour scale: a grey activation map (0–255) as jet colours, transparent
 * where the activation is low, so the radiograph shows through. */

type Rgb = readonly [number, number, number];

/** The jet stops, evenly spaced from activation 0 to 255 — the same as the legend
 * (components/FindingsPanel.tsx CamLegend: #00008f → #0000ff → #00ffff → #ffff00 → #ff0000 →
 * #800000), so what the viewer draws is what the legend says. */
export const JET_STOPS: readonly Rgb[] = [
  [0x00, 0x00, 0x8f],
  [0x00, 0x00, 0xff],
  [0x00, 0xff, 0xff],
  [0xff, 0xff, 0x00],
  [0xff, 0x00, 0x00],
  [0x80, 0x00, 0x00],
];

/** Activations from 0 up to this value fade in linearly (0 is fully transparent); at and
 * above it a pixel is opaque (the overlay's opacity control then applies to the layer). */
export const ALPHA_RAMP = 32;

/** The jet colour of an activation (0–255, rounded, clamped). */
export function jetColour(activation: number): Rgb {
  const v = Math.min(255, Math.max(0, activation));
  const position = (v / 255) * (JET_STOPS.length - 1);
  const i = Math.min(JET_STOPS.length - 2, Math.floor(position));
  const t = position - i;
  const a = JET_STOPS[i] as Rgb;
  const b = JET_STOPS[i + 1] as Rgb;
  return [Math.round(a[0] + (b[0] - a[0]) * t), Math.round(a[1] + (b[1] - a[1]) * t), Math.round(a[2] + (b[2] - a[2]) * t)];
}

/** The alpha (0–255) of an activation: 0 for 0, rising to 255 at ``ALPHA_RAMP``. */
export function camAlpha(activation: number): number {
  return Math.round(Math.min(1, Math.max(0, activation) / ALPHA_RAMP) * 255);
}

/** A 256-entry RGBA table (1024 bytes): entry v is the colour and alpha of activation v. */
export function jetLut(): Uint8ClampedArray {
  const lut = new Uint8ClampedArray(256 * 4);
  for (let v = 0; v < 256; v++) {
    const [r, g, b] = jetColour(v);
    lut.set([r, g, b, camAlpha(v)], v * 4);
  }
  return lut;
}

const LUT = jetLut();

/**
 * Colours a grey map in place: ``rgba`` holds RGBA pixels (as a canvas's ImageData does,
 * the grey value in the red channel); each becomes its jet colour and alpha.
 */
export function colouriseGrey(rgba: Uint8ClampedArray): void {
  for (let p = 0; p < rgba.length; p += 4) {
    const v = (rgba[p] as number) * 4;
    rgba[p] = LUT[v] as number;
    rgba[p + 1] = LUT[v + 1] as number;
    rgba[p + 2] = LUT[v + 2] as number;
    rgba[p + 3] = LUT[v + 3] as number;
  }
}
