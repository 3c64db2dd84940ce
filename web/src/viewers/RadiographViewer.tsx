/** The radiograph viewer (Cornerstone3D): the stored, de-identified DICOM decoded in the
 * browser — 16-bit values, modality LUT and MONOCHROME1 as the file says — in a StackViewport
 * with pan (left drag, or middle), zoom (wheel), window/level (right drag), presets on keys
 * 1–4, Invert, Reset and length measurements; the selected label's heat map on top.
 *
 * Test hooks: the root is ``data-testid="radiograph-viewport"`` with ``data-state``
 * "loading", "ready" (after the first frame showing the image was rendered) or "error", and
 * ``data-renders`` counting Cornerstone's renders; the Cornerstone canvas is inside it, and so
 * is the heat map canvas ``data-testid="cam-overlay"`` with ``data-visible``. */
import { useEffect, useRef, useState } from "react";
import { fetchBinary } from "../api/client";
import { ErrorMessage } from "../components/ErrorMessage";
import { useShortcuts } from "../lib/keyboard";
import { camUrl, loadCam } from "./radiograph/cam";
import { WINDOW_PRESETS, widthCentre, type VoiRange } from "./radiograph/presets";
import type { RadiographScene } from "./radiograph/scene";
import type { RadiographViewerProps } from "./types";

type LoadState = "loading" | "ready" | "error";

function instanceFileUrl(caseId: string, instanceId: string): string {
  return `/api/cases/${encodeURIComponent(caseId)}/instances/${encodeURIComponent(instanceId)}/file`;
}

function formatWindow(range: VoiRange): string {
  const { width, centre } = widthCentre(range);
  return `W ${Math.round(width)} · L ${Math.round(centre)}`;
}

export function RadiographViewer({ caseId, instance, finding, overlay }: RadiographViewerProps) {
  const instanceId = instance.id;
  const rootRef = useRef<HTMLDivElement>(null);
  const hostRef = useRef<HTMLDivElement>(null);
  const windowRef = useRef<HTMLSpanElement>(null);
  const [scene, setScene] = useState<RadiographScene | null>(null);
  const [state, setState] = useState<LoadState>("loading");
  const [loadError, setLoadError] = useState<unknown>(null);
  const [attempt, setAttempt] = useState(0);
  const [lengthMode, setLengthMode] = useState(false);
  const [measurements, setMeasurements] = useState(0);
  const [hasSpacing, setHasSpacing] = useState(true);

  // The scene: one per image (and retry), destroyed when the image changes or on unmount.
  // The DICOM fetch, the viewer's code chunk and Cornerstone's start run at the same time.
  useEffect(() => {
    const host = hostRef.current;
    const root = rootRef.current;
    if (!host || !root) return;
    const abort = new AbortController();
    let disposed = false;
    let created: RadiographScene | null = null;
    let renders = 0;
    root.dataset.renders = "0";
    setState("loading");
    setLoadError(null);
    setScene(null);
    setLengthMode(false);
    setMeasurements(0);
    if (windowRef.current) windowRef.current.textContent = "";
    const listener = {
      rendered: () => {
        renders += 1;
        root.dataset.renders = String(renders);
      },
      voi: (range: VoiRange) => {
        if (windowRef.current) windowRef.current.textContent = formatWindow(range);
      },
      measurements: (count: number) => setMeasurements(count),
      rebuild: () => setAttempt((n) => n + 1),
    };
    const url = instanceFileUrl(caseId, instanceId);
    const scenePromise = import("./radiograph/scene").then(async ({ RadiographScene }) => {
      const s = await RadiographScene.create(host, listener);
      created = s;
      if (disposed) s.destroy();
      return s;
    });
    const bytesPromise = fetchBinary(url, { signal: abort.signal }).then((response) => response.arrayBuffer());
    void (async () => {
      try {
        const [s, bytes] = await Promise.all([scenePromise, bytesPromise]);
        if (disposed) return;
        await s.show(bytes, `wadouri:${url}`);
        if (disposed) return;
        // Also set directly: the first frame is on screen now, not at React's next commit.
        root.dataset.state = "ready";
        setState("ready");
        setScene(s);
        setHasSpacing(s.hasPixelSpacing());
      } catch (error) {
        if (disposed) return;
        setLoadError(error);
        setState("error");
      }
    })();
    // Neither a failed fetch nor a failed start may surface as an unhandled rejection.
    scenePromise.catch(() => undefined);
    bytesPromise.catch(() => undefined);
    return () => {
      disposed = true;
      abort.abort();
      created?.destroy();
    };
  }, [caseId, instanceId, attempt]);

  // The selected label's heat map, coloured once per label (kept while this viewer lives).
  const camCache = useRef(new Map<string, HTMLCanvasElement>());
  const [cam, setCam] = useState<HTMLCanvasElement | null>(null);
  const [camError, setCamError] = useState<unknown>(null);
  const findingId = finding?.id ?? null;
  const camLabel = finding && overlay.label && finding.cam_labels.includes(overlay.label) ? overlay.label : null;
  useEffect(() => {
    setCamError(null);
    if (!findingId || !camLabel) {
      setCam(null);
      return;
    }
    const url = camUrl(caseId, findingId, camLabel);
    const cached = camCache.current.get(url);
    if (cached) {
      setCam(cached);
      return;
    }
    const abort = new AbortController();
    loadCam(url, abort.signal).then(
      (canvas) => {
        camCache.current.set(url, canvas);
        if (!abort.signal.aborted) setCam(canvas);
      },
      (error: unknown) => {
        if (abort.signal.aborted) return;
        setCam(null);
        setCamError(error);
      },
    );
    return () => abort.abort();
  }, [caseId, findingId, camLabel]);

  useEffect(() => {
    scene?.setCam(cam);
  }, [scene, cam]);
  useEffect(() => {
    scene?.setCamDisplay(overlay.visible, overlay.opacity);
  }, [scene, cam, overlay.visible, overlay.opacity]);
  useEffect(() => {
    scene?.setLengthMode(lengthMode);
  }, [scene, lengthMode]);

  const shortcuts = Object.fromEntries(WINDOW_PRESETS.map((preset) => [preset.key, () => scene?.applyPreset(preset)]));
  useShortcuts(shortcuts, scene !== null);

  const ready = scene !== null;
  return (
    <div ref={rootRef} data-testid="radiograph-viewport" data-state={state} className="flex h-full min-h-0 flex-col bg-black">
      <div className="flex flex-wrap items-center gap-2 border-b border-line bg-panel px-3 py-1.5 text-sm">
        <button type="button" className="btn" disabled={!ready} onClick={() => scene?.toggleInvert()}>
          Invert
        </button>
        <button type="button" className="btn" disabled={!ready} onClick={() => scene?.reset()} title="Fit the image; its own window and polarity">
          Reset
        </button>
        <button
          type="button"
          className={`btn ${lengthMode ? "border-accent bg-accent/20" : ""}`}
          aria-pressed={lengthMode}
          disabled={!ready}
          onClick={() => setLengthMode((on) => !on)}
          title="Left-drag measures a length (the middle button still pans)"
        >
          Length
        </button>
        <button type="button" className="btn" disabled={!ready || measurements === 0} onClick={() => scene?.clearMeasurements()}>
          Clear measurements
        </button>
        <div role="group" aria-label="Window presets (keys 1 to 4)" className="flex items-center gap-1">
          {WINDOW_PRESETS.map((preset) => (
            <button
              key={preset.key}
              type="button"
              className="btn px-2"
              disabled={!ready}
              aria-keyshortcuts={preset.key}
              title={`Key ${preset.key}: ${preset.description}`}
              onClick={() => scene?.applyPreset(preset)}
            >
              <kbd className="font-mono text-muted">{preset.key}</kbd> {preset.name}
            </button>
          ))}
        </div>
      </div>
      <div className="relative min-h-0 flex-1 overflow-hidden">
        <div ref={hostRef} className="absolute inset-0" />
        <span
          ref={windowRef}
          className="pointer-events-none absolute right-3 top-2 rounded bg-black/60 px-1.5 font-mono text-xs text-fg empty:hidden"
          title="Window width and level"
        />
        {lengthMode && (
          <p role="note" className={`pointer-events-none absolute left-3 top-2 max-w-md rounded bg-black/70 px-2 py-1 text-xs ${hasSpacing ? "text-fg" : "text-warn"}`}>
            {hasSpacing
              ? "Lengths in mm from the image's pixel spacing; the suffix says how it was calibrated: Proj — at the detector (Imager Pixel Spacing), ERMF — corrected for magnification, Unknown — not stated in the file."
              : "This image has no Pixel Spacing or Imager Pixel Spacing: lengths are in pixels, not millimetres."}
          </p>
        )}
        <p className="pointer-events-none absolute bottom-2 left-3 rounded bg-black/60 px-1.5 text-xs text-fg">
          Drag: pan · wheel: zoom · right-drag: window/level · 1–4: window presets
        </p>
        {state === "loading" && (
          <p role="status" className="pointer-events-none absolute left-3 top-3 rounded bg-panel/80 px-2 py-1 text-xs text-muted">
            Loading image…
          </p>
        )}
        {state === "error" && (
          <div className="absolute inset-0 flex flex-col items-start gap-2 bg-black/80 p-4">
            <ErrorMessage error={loadError} title="The image could not be shown" />
            <button type="button" className="btn" onClick={() => setAttempt((n) => n + 1)}>
              Try again
            </button>
          </div>
        )}
        {state === "ready" && camError !== null && (
          <div className="absolute right-3 top-8 max-w-sm">
            <ErrorMessage error={camError} title="The heat map could not be loaded" />
          </div>
        )}
      </div>
    </div>
  );
}
