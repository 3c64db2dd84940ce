/** A finding's heat map for one label: fetched as the server's 8-bit grey PNG and coloured
 * once (jet, transparent where low) into a small canvas the scene stretches over the image. */
import { fetchBinary } from "../../api/client";
import { colouriseGrey } from "./colormap";

/** The URL of a label's heat map of a classification finding. */
export function camUrl(caseId: string, findingId: string, label: string): string {
  return `/api/cases/${encodeURIComponent(caseId)}/findings/${encodeURIComponent(findingId)}/cam/${encodeURIComponent(label)}/map`;
}

/** The coloured heat map at its own resolution (smaller than the image, same aspect ratio). */
export async function loadCam(url: string, signal: AbortSignal): Promise<HTMLCanvasElement> {
  const blob = await (await fetchBinary(url, { signal })).blob();
  // The grey levels are data, not colours: no colour-space conversion, no premultiplying.
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  try {
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new Error("no 2D canvas context for the heat map");
    ctx.drawImage(bitmap, 0, 0);
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    colouriseGrey(pixels.data);
    ctx.putImageData(pixels, 0, 0);
    return canvas;
  } finally {
    bitmap.close();
  }
}
