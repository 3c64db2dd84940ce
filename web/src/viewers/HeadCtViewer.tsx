/** The head CT viewer of a finding read slice by slice (``slice_heatmap`` view, ``ct_head``):
 * one slice at a time as the server renders it under a head CT window (brain, subdural, bone;
 * keys 1–3), the slice's heat map of ``any`` on top (coloured and shown like the radiograph
 * CAMs: same colour scale, visibility and opacity), a slider with ↑/↓ (and the mouse wheel)
 * over the slices, a strip of every slice's ``any`` probability and the list of slices the
 * model called positive. Reading starts on the slice with the highest ``any`` probability.
 *
 * Test hooks: the root is ``data-testid="ct-viewport"`` with ``data-state`` "loading",
 * "ready" (a slice image is drawn) or "error" and ``data-slice`` (the slice shown); the slice
 * canvas is ``ct-slice-image`` (``data-slice``, ``data-window`` of what it holds) and the heat
 * map canvas ``ct-heatmap-overlay`` (``data-slice``, ``data-visible``). */
import { useQuery } from "@tanstack/react-query";
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { api, fetchBinary, unwrap } from "../api/client";
import type { SliceRow, SliceTable } from "../api/types";
import { ErrorMessage } from "../components/ErrorMessage";
import { LabelBar } from "../components/FindingsPanel";
import { formatPercent } from "../lib/format";
import { useShortcuts } from "../lib/keyboard";
import { BoundedCache } from "./ct/cache";
import {
  CT_WINDOWS,
  displayAspect,
  fitRect,
  positiveSlices,
  SLICE_HEATMAP_LABEL,
  sliceHeatmapUrl,
  sliceImageUrl,
  sliceName,
  sliceProbability,
  startSlice,
  stepSlice,
} from "./ct/slices";
import { loadCam } from "./radiograph/cam";
import type { HeadCtViewerProps } from "./types";

type LoadState = "loading" | "ready" | "error";

/** Decoded slice images kept per viewer (slice and window): enough to scroll back and forth
 * without refetching, bounded so a long series does not hold every slice in memory. */
const IMAGE_CACHE_SIZE = 48;
const HEATMAP_CACHE_SIZE = 256;

async function loadSliceImage(url: string, signal: AbortSignal): Promise<ImageBitmap> {
  const blob = await (await fetchBinary(url, { signal })).blob();
  return createImageBitmap(blob);
}

export function HeadCtViewer({ caseId, finding, overlay }: HeadCtViewerProps) {
  const findingId = finding.id;
  const tableQuery = useQuery({
    queryKey: ["per-slice", caseId, findingId],
    queryFn: async () =>
      unwrap(
        await api.GET("/api/cases/{case_id}/findings/{finding_id}/per-slice", {
          params: { path: { case_id: caseId, finding_id: findingId } },
        }),
      ),
    staleTime: Infinity,
  });
  const table = tableQuery.data ?? null;
  const count = table?.slices.length ?? 0;

  const [chosen, setChosen] = useState<number | null>(null);
  const index = chosen ?? (table ? startSlice(table) : 0);
  const row = table?.slices[index] ?? null;
  const [windowName, setWindowName] = useState(CT_WINDOWS[0]?.name ?? "brain");
  const go = (next: number) => setChosen(stepSlice(next, 0, count));
  const step = (delta: number) => setChosen(stepSlice(index, delta, count));

  useShortcuts(
    {
      ArrowUp: () => step(1),
      ArrowDown: () => step(-1),
      ...Object.fromEntries(CT_WINDOWS.map((w) => [w.key, () => setWindowName(w.name)])),
    },
    count > 0,
  );

  // The slice image under the chosen window.
  const rootRef = useRef<HTMLDivElement>(null);
  const imageRef = useRef<HTMLCanvasElement>(null);
  const images = useRef(new BoundedCache<string, ImageBitmap>(IMAGE_CACHE_SIZE, (bitmap) => bitmap.close()));
  const [imageSize, setImageSize] = useState<{ width: number; height: number } | null>(null);
  const [imageError, setImageError] = useState<unknown>(null);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    if (!table || count === 0) return;
    const url = sliceImageUrl(caseId, findingId, index, windowName);
    const draw = (bitmap: ImageBitmap) => {
      const canvas = imageRef.current;
      const ctx = canvas?.getContext("2d");
      if (!canvas || !ctx) return;
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      ctx.drawImage(bitmap, 0, 0);
      canvas.dataset.slice = String(index);
      canvas.dataset.window = windowName;
      setImageSize((size) => (size?.width === bitmap.width && size.height === bitmap.height ? size : { width: bitmap.width, height: bitmap.height }));
      if (rootRef.current) rootRef.current.dataset.state = "ready";
    };
    setImageError(null);
    const cached = images.current.get(url);
    if (cached) {
      draw(cached);
      return;
    }
    const abort = new AbortController();
    loadSliceImage(url, abort.signal).then(
      (bitmap) => {
        if (abort.signal.aborted) {
          bitmap.close();
          return;
        }
        images.current.set(url, bitmap);
        draw(bitmap);
      },
      (error: unknown) => {
        if (!abort.signal.aborted) setImageError(error);
      },
    );
    return () => abort.abort();
  }, [caseId, findingId, table, count, index, windowName, attempt]);
  useEffect(() => {
    const cache = images.current;
    return () => cache.clear();
  }, []);

  // The slice's heat map, coloured once per slice (the radiograph CAMs' loader and colours).
  const heatRef = useRef<HTMLCanvasElement>(null);
  const heatmaps = useRef(new BoundedCache<number, HTMLCanvasElement>(HEATMAP_CACHE_SIZE));
  const [heatSlice, setHeatSlice] = useState<number | null>(null);
  const [heatError, setHeatError] = useState<unknown>(null);
  useEffect(() => {
    if (!table || count === 0) return;
    setHeatError(null);
    setHeatSlice(null);
    const draw = (map: HTMLCanvasElement) => {
      const canvas = heatRef.current;
      const ctx = canvas?.getContext("2d");
      if (!canvas || !ctx) return;
      canvas.width = map.width;
      canvas.height = map.height;
      ctx.clearRect(0, 0, map.width, map.height);
      ctx.drawImage(map, 0, 0);
      setHeatSlice(index);
    };
    const cached = heatmaps.current.get(index);
    if (cached) {
      draw(cached);
      return;
    }
    const abort = new AbortController();
    loadCam(sliceHeatmapUrl(caseId, findingId, index), abort.signal).then(
      (map) => {
        heatmaps.current.set(index, map);
        if (!abort.signal.aborted) draw(map);
      },
      (error: unknown) => {
        if (!abort.signal.aborted) setHeatError(error);
      },
    );
    return () => abort.abort();
  }, [caseId, findingId, table, count, index]);

  // The slice's box: the largest rectangle of its aspect ratio (in mm) in the image area.
  const areaRef = useRef<HTMLDivElement>(null);
  const [area, setArea] = useState({ width: 0, height: 0 });
  useLayoutEffect(() => {
    const element = areaRef.current;
    if (!element) return;
    const measure = () => setArea({ width: element.clientWidth, height: element.clientHeight });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  const aspect = imageSize ? displayAspect(imageSize.width, imageSize.height, table?.spacing_mm ?? []) : 1;
  const box = fitRect(area.width, area.height, aspect);

  const heatShown = overlay.visible && heatSlice === index;
  const failed = tableQuery.isError || imageError !== null;
  const state: LoadState = failed ? "error" : imageSize ? "ready" : "loading";
  const windowTitle = CT_WINDOWS.find((w) => w.name === windowName)?.title ?? windowName;

  return (
    <div ref={rootRef} data-testid="ct-viewport" data-state={state} data-slice={index} className="flex h-full min-h-0 flex-col bg-black">
      <div className="flex flex-wrap items-center gap-2 border-b border-line bg-panel px-3 py-1.5 text-sm">
        <div role="group" aria-label="Window presets (keys 1 to 3)" className="flex items-center gap-1">
          {CT_WINDOWS.map((w) => (
            <button
              key={w.name}
              type="button"
              className={`btn px-2 ${w.name === windowName ? "border-accent bg-accent/20" : ""}`}
              aria-pressed={w.name === windowName}
              aria-keyshortcuts={w.key}
              title={`Key ${w.key}: ${w.title} window, level ${w.centre} HU, width ${w.width} HU`}
              onClick={() => setWindowName(w.name)}
            >
              <kbd className="font-mono text-muted">{w.key}</kbd> {w.title}
            </button>
          ))}
        </div>
        {row && (
          <span className="ml-auto font-mono text-xs text-muted" data-testid="ct-slice-name">
            {sliceName(row, count)}
          </span>
        )}
      </div>

      <div className="flex min-h-0 flex-1">
        <div ref={areaRef} className="relative min-h-0 min-w-0 flex-1 overflow-hidden" onWheel={(e) => step(e.deltaY > 0 ? 1 : e.deltaY < 0 ? -1 : 0)}>
          <div className="absolute" style={{ left: box.left, top: box.top, width: box.width, height: box.height }}>
            <canvas
              ref={imageRef}
              data-testid="ct-slice-image"
              role="img"
              aria-label={row ? `${sliceName(row, count)}, ${windowTitle} window` : "Head CT slice"}
              className="absolute inset-0 h-full w-full"
            />
            <canvas
              ref={heatRef}
              data-testid="ct-heatmap-overlay"
              data-visible={heatShown}
              data-slice={heatSlice ?? ""}
              aria-hidden="true"
              className="pointer-events-none absolute inset-0 h-full w-full"
              style={{ opacity: Math.min(1, Math.max(0, overlay.opacity)), visibility: heatShown ? "visible" : "hidden" }}
            />
          </div>
          <span className="pointer-events-none absolute right-3 top-2 rounded bg-black/60 px-1.5 font-mono text-xs text-fg">
            {windowTitle} · W {CT_WINDOWS.find((w) => w.name === windowName)?.width} · L {CT_WINDOWS.find((w) => w.name === windowName)?.centre}
          </span>
          <p className="pointer-events-none absolute bottom-2 left-3 rounded bg-black/60 px-1.5 text-xs text-fg">↑/↓ or wheel: slice · 1–3: window · o: heat map</p>
          {state === "loading" && (
            <p role="status" className="pointer-events-none absolute left-3 top-3 rounded bg-panel/80 px-2 py-1 text-xs text-muted">
              Loading slices…
            </p>
          )}
          {failed && (
            <div className="absolute inset-0 flex flex-col items-start gap-2 bg-black/80 p-4">
              <ErrorMessage error={tableQuery.error ?? imageError} title="The slice could not be shown" />
              <button
                type="button"
                className="btn"
                onClick={() => {
                  if (tableQuery.isError) void tableQuery.refetch();
                  setAttempt((n) => n + 1);
                }}
              >
                Try again
              </button>
            </div>
          )}
          {!failed && heatError !== null && (
            <div className="absolute right-3 top-8 max-w-sm">
              <ErrorMessage error={heatError} title="The heat map could not be loaded" />
            </div>
          )}
        </div>
        {table && row && <SliceSide table={table} row={row} onGo={go} />}
      </div>

      {table && count > 0 && (
        <div className="space-y-1 border-t border-line bg-panel px-3 py-2">
          <SliceStrip table={table} index={index} onGo={go} />
          <label className="flex items-center gap-2 text-xs">
            <span className="text-muted">Slice</span>
            <input
              type="range"
              className="flex-1"
              min={0}
              max={count - 1}
              step={1}
              value={index}
              onChange={(e) => go(Number(e.target.value))}
              aria-label="Slice"
              aria-valuetext={row ? sliceName(row, count) : undefined}
              aria-keyshortcuts="ArrowUp ArrowDown"
            />
            <span className="w-16 text-right font-mono">
              {index + 1} / {count}
            </span>
          </label>
        </div>
      )}
    </div>
  );
}

/** Every slice's ``any`` probability as a bar (positive slices in the warning colour, the
 * threshold as a line, the slice shown outlined); a click goes to that slice. The slider and
 * the list of positive slices are the keyboard's way to the same places. */
function SliceStrip({ table, index, onGo }: { table: SliceTable; index: number; onGo: (index: number) => void }) {
  const threshold = table.thresholds[SLICE_HEATMAP_LABEL] ?? 0.5;
  return (
    <div className="relative flex h-8 items-end gap-px" aria-hidden="true" data-testid="ct-slice-strip">
      {table.slices.map((row) => {
        const p = sliceProbability(row);
        const positive = row.positive.length > 0;
        return (
          <div
            key={row.index}
            className={`flex h-full min-w-0 flex-1 cursor-pointer items-end ${row.index === index ? "bg-raised outline outline-1 outline-accent" : "hover:bg-raised"}`}
            title={`${row.index + 1}: ${SLICE_HEATMAP_LABEL} ${formatPercent(p)}`}
            data-positive={positive}
            onClick={() => onGo(row.index)}
          >
            <div className={`w-full ${positive ? "bg-warn" : "bg-accent/50"}`} style={{ height: `${Math.max(4, p * 100)}%` }} />
          </div>
        );
      })}
      <div className="pointer-events-none absolute inset-x-0 h-px bg-fg/60" style={{ bottom: `${threshold * 100}%` }} />
    </div>
  );
}

/** The slice shown, label by label, and the slices with positive labels (buttons). */
function SliceSide({ table, row, onGo }: { table: SliceTable; row: SliceRow; onGo: (index: number) => void }) {
  const positives = positiveSlices(table);
  const count = table.slices.length;
  return (
    <div className="w-56 shrink-0 space-y-3 overflow-y-auto border-l border-line bg-panel p-2 text-xs">
      <section aria-label="This slice">
        <h2 className="mb-1 font-semibold">This slice</h2>
        <ul className="space-y-1" aria-label="Slice labels">
          {table.labels.map((label) => {
            const probability = row.probabilities[label] ?? 0;
            const positive = row.positive.includes(label);
            return (
              <li key={label} aria-label={`${label} ${formatPercent(probability)}${positive ? " positive" : ""}`}>
                <LabelBar row={{ label, probability, threshold: table.thresholds[label] ?? 0.5, positive }} />
              </li>
            );
          })}
        </ul>
      </section>
      <section aria-label="Slices with positive labels">
        <h2 className="mb-1 font-semibold">Positive slices ({positives.length})</h2>
        {positives.length === 0 ? (
          <p className="text-muted">No slice has a positive label.</p>
        ) : (
          <ul className="space-y-0.5">
            {positives.map((p) => (
              <li key={p.index}>
                <button
                  type="button"
                  className={`w-full rounded px-1.5 py-0.5 text-left ${p.index === row.index ? "bg-raised ring-1 ring-accent" : "hover:bg-raised"}`}
                  aria-current={p.index === row.index ? "true" : undefined}
                  aria-label={`${sliceName(p, count)}: ${p.positive.join(", ")}`}
                  data-slice={p.index}
                  onClick={() => onGo(p.index)}
                >
                  <span className="font-mono">{p.index + 1}</span> <span className="text-warn">{p.positive.join(", ")}</span>
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
