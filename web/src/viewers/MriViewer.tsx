/** The MRI viewer of a brain-tumour segmentation finding (NiiVue, WebGL2): the four
 * sequences, axial/coronal/sagittal/multiplanar and 3D views, the label overlay per region,
 * and correcting the mask with NiiVue's pen, saved as an ``edit`` decision.
 *
 * Test hooks: the root is ``data-testid="mri-viewport"`` with ``data-state`` "loading",
 * "ready" (volume and labels drawn) or "error"; the NiiVue canvas is inside it. */
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api, fetchBinary, unwrap } from "../api/client";
import { ErrorMessage } from "../components/ErrorMessage";
import { ALL_VISIBLE, type LabelValue, type LabelVisibility, labelVolumesFromRegions, labelVolumesMl } from "./mri/labels";
import { MaskEditor } from "./mri/MaskEditor";
import { gunzip, gzip, withLabelVoxels } from "./mri/nifti";
import { MAX_UNDO_STATES, MriScene, type PenValue, type ViewName } from "./mri/scene";
import { SegmentationLegend } from "./mri/SegmentationLegend";
import type { MriViewerProps } from "./types";

/** The channel order of the stored volume (training.labels.MRI_CHANNELS). */
const SEQUENCES = ["T1", "T1ce", "T2", "FLAIR"] as const;
type Sequence = (typeof SEQUENCES)[number];

const VIEWS: { view: ViewName; name: string }[] = [
  { view: "axial", name: "Axial" },
  { view: "coronal", name: "Coronal" },
  { view: "sagittal", name: "Sagittal" },
  { view: "multiplanar", name: "Multiplanar" },
  { view: "render", name: "3D" },
];

/** Strokes that can be undone (NiiVue keeps maxDrawUndoBitmaps states, the first is the
 * loaded mask; undoing past it would wrap round to the newest). */
const UNDO_DEPTH = MAX_UNDO_STATES - 1;

type LoadState = "loading" | "ready" | "error";

/** The frame of ``sequence`` in the volume, from the server's channel list when it has one. */
function channelIndex(sequence: Sequence, channels: readonly string[] | null): number {
  const listed = channels?.findIndex((c) => c.toLowerCase() === sequence.toLowerCase()) ?? -1;
  return listed >= 0 ? listed : SEQUENCES.indexOf(sequence);
}

function findingUrl(caseId: string, findingId: string, rest: string): string {
  return `/api/cases/${encodeURIComponent(caseId)}/findings/${encodeURIComponent(findingId)}/${rest}`;
}

async function fetchBytes(url: string, signal: AbortSignal): Promise<ArrayBuffer> {
  return (await fetchBinary(url, { signal })).arrayBuffer();
}

export function MriViewer({ caseId, finding, readOnly, onMaskSaved }: MriViewerProps) {
  const findingId = finding.id;
  const decisionId = finding.current_decision?.id ?? null;
  const containerRef = useRef<HTMLDivElement>(null);
  const sceneRef = useRef<MriScene | null>(null);
  /** The label map file now shown (the template of a saved edit) and the decision it is of. */
  const labelFileRef = useRef<{ bytes: ArrayBuffer; decisionId: string | null } | null>(null);

  const [state, setState] = useState<LoadState>("loading");
  const [loadError, setLoadError] = useState<unknown>(null);
  const [attempt, setAttempt] = useState(0);
  const [channels, setChannels] = useState<string[] | null>(null);
  const [voxelMl, setVoxelMl] = useState(0);
  const [sequence, setSequence] = useState<Sequence>("FLAIR");
  const [view, setView] = useState<ViewName>("multiplanar");
  const [visible, setVisible] = useState<LabelVisibility>(ALL_VISIBLE);
  const [opacity, setOpacity] = useState(0.5);

  const [editing, setEditing] = useState(false);
  const [pen, setPen] = useState<PenValue>(1);
  const [strokes, setStrokes] = useState(0);
  const [drawn, setDrawn] = useState<Record<LabelValue, number> | null>(null);
  const [reason, setReason] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [saveError, setSaveError] = useState<unknown>(null);

  const decisionIdRef = useRef(decisionId);
  decisionIdRef.current = decisionId;
  // What a new scene starts with: the controls' current values, without re-creating it.
  const settingsRef = useRef({ sequence, view, visible, opacity, channels });
  settingsRef.current = { sequence, view, visible, opacity, channels };

  // The scene: created per finding (and per retry), destroyed on unmount.
  useEffect(() => {
    const container = containerRef.current;
    if (!container) return;
    const abort = new AbortController();
    let scene: MriScene | null = null;
    let disposed = false;
    setState("loading");
    setLoadError(null);
    setEditing(false);
    void (async () => {
      try {
        const [grid, volumeBytes, labelBytes] = await Promise.all([
          api.GET("/api/cases/{case_id}/findings/{finding_id}/volume", {
            params: { path: { case_id: caseId, finding_id: findingId } },
            signal: abort.signal,
          }).then(unwrap),
          fetchBytes(findingUrl(caseId, findingId, "nifti/volume"), abort.signal),
          fetchBytes(findingUrl(caseId, findingId, "nifti/labels?mask=current"), abort.signal),
        ]);
        if (disposed) return;
        const s = settingsRef.current;
        scene = await MriScene.create(container, {
          channel: channelIndex(s.sequence, grid.channels),
          view: s.view,
          visible: s.visible,
          opacity: s.opacity,
        });
        if (disposed) {
          scene.destroy();
          return;
        }
        await scene.load(volumeBytes, labelBytes, Math.max(grid.channels.length, SEQUENCES.length));
        if (disposed) return;
        sceneRef.current = scene;
        scene.onViewChanged = setView;
        labelFileRef.current = { bytes: labelBytes, decisionId: decisionIdRef.current };
        setChannels(grid.channels);
        const [sx, sy, sz] = grid.spacing_mm;
        setVoxelMl(sx !== undefined && sy !== undefined && sz !== undefined ? (sx * sy * sz) / 1000 : scene.voxelMl());
        setState("ready");
      } catch (error) {
        if (disposed) return;
        setLoadError(error);
        setState("error");
      }
    })();
    return () => {
      disposed = true;
      abort.abort();
      sceneRef.current = null;
      scene?.destroy();
    };
  }, [caseId, findingId, attempt]);

  /** Fetches the label map in force and shows it (the drawing, if open, is closed). */
  const reloadLabels = useCallback(
    async (forDecision: string | null) => {
      const scene = sceneRef.current;
      if (!scene) return;
      setState("loading");
      try {
        const bytes = await fetchBytes(findingUrl(caseId, findingId, "nifti/labels?mask=current"), new AbortController().signal);
        if (sceneRef.current !== scene) return;
        await scene.replaceLabels(bytes);
        labelFileRef.current = { bytes, decisionId: forDecision };
        setState("ready");
      } catch (error) {
        if (sceneRef.current !== scene) return;
        setLoadError(error);
        setState("error");
      }
    },
    [caseId, findingId],
  );

  // Another decision in force (someone's edit, or this user's accept after an edit): show its
  // mask, unless the user is drawing (a save would then meet the 409 and offer a reload).
  useEffect(() => {
    if (state !== "ready" || editing) return;
    const shown = labelFileRef.current;
    if (shown && shown.decisionId !== decisionId) void reloadLabels(decisionId);
  }, [decisionId, editing, state, reloadLabels]);

  useEffect(() => {
    sceneRef.current?.setChannel(channelIndex(sequence, channels));
  }, [sequence, channels, state]);
  useEffect(() => {
    sceneRef.current?.setView(view);
  }, [view, state]);
  useEffect(() => {
    sceneRef.current?.setLabelDisplay(visible, opacity);
  }, [visible, opacity, state]);

  const measureDrawing = useCallback(() => {
    const scene = sceneRef.current;
    const voxels = scene?.currentLabelVoxels();
    setDrawn(scene?.isEditing && voxels ? labelVolumesMl(voxels, voxelMl) : null);
  }, [voxelMl]);

  const stopEditing = useCallback(() => {
    const scene = sceneRef.current;
    if (scene) scene.onDrawingChanged = () => {};
    scene?.stopEditing();
    setEditing(false);
    setStrokes(0);
    setDrawn(null);
    setProblem(null);
    setSaveError(null);
  }, []);

  const startEditing = () => {
    const scene = sceneRef.current;
    if (!scene || readOnly) return;
    if (view === "render") setView("axial");
    if (!scene.startEditing(pen)) {
      setSaveError(new Error("NiiVue could not open the label map for drawing"));
      return;
    }
    scene.onDrawingChanged = (action) => {
      if (action === "draw") setStrokes((n) => Math.min(n + 1, UNDO_DEPTH));
      if (action === "undo") setStrokes((n) => Math.max(0, n - 1));
      measureDrawing();
    };
    setEditing(true);
    setStrokes(0);
    measureDrawing();
  };

  // Losing the right to edit (signed off elsewhere, released) closes the drawing.
  useEffect(() => {
    if (readOnly && editing) stopEditing();
  }, [readOnly, editing, stopEditing]);

  const choosePen = (value: PenValue) => {
    setPen(value);
    sceneRef.current?.setPen(value);
    if (value !== 0 && !visible[value]) setVisible({ ...visible, [value]: true });
  };

  const save = async () => {
    const scene = sceneRef.current;
    const template = labelFileRef.current;
    if (!scene || !template) return;
    if (!reason.trim()) {
      setProblem("Give a reason for the mask edit.");
      return;
    }
    setProblem(null);
    setSaveError(null);
    setSaving(true);
    try {
      const voxels = scene.drawingInStoredOrder();
      const file = await gzip(withLabelVoxels(await gunzip(new Uint8Array(template.bytes)), voxels));
      const supersedes = decisionIdRef.current;
      const form = new FormData();
      form.append("file", new Blob([file.slice()], { type: "application/gzip" }), "mask.nii.gz");
      form.append("reason", reason.trim());
      if (supersedes) form.append("supersedes", supersedes);
      const decision = unwrap(
        await api.POST("/api/cases/{case_id}/findings/{finding_id}/mask", {
          params: { path: { case_id: caseId, finding_id: findingId } },
          body: { file: "mask.nii.gz", reason: reason.trim(), supersedes },
          bodySerializer: () => form,
        }),
      );
      stopEditing();
      setReason("");
      onMaskSaved();
      await reloadLabels(decision.id);
    } catch (error) {
      setSaveError(error);
    } finally {
      setSaving(false);
    }
  };

  const recorded = useMemo(() => labelVolumesFromRegions(finding.current_decision?.volumes_ml ?? finding.volumes_ml), [finding]);

  return (
    <div data-testid="mri-viewport" data-state={state} className="flex h-full min-h-0 flex-col bg-black">
      <div className="flex flex-wrap items-center gap-3 border-b border-line bg-panel px-3 py-1.5 text-sm">
        <div role="group" aria-label="Sequence" className="flex gap-1">
          {SEQUENCES.map((s) => (
            <button key={s} type="button" className={`btn ${s === sequence ? "border-accent bg-accent/20" : ""}`} aria-pressed={s === sequence} onClick={() => setSequence(s)}>
              {s}
            </button>
          ))}
        </div>
        <div role="group" aria-label="View" className="flex gap-1">
          {VIEWS.map((v) => (
            <button key={v.view} type="button" className={`btn ${v.view === view ? "border-accent bg-accent/20" : ""}`} aria-pressed={v.view === view} onClick={() => setView(v.view)}>
              {v.name}
            </button>
          ))}
        </div>
        {!readOnly && (
          <button
            type="button"
            className={`btn ml-auto ${editing ? "border-accent bg-accent/20" : ""}`}
            aria-pressed={editing}
            disabled={state !== "ready" || saving}
            onClick={() => (editing ? stopEditing() : startEditing())}
          >
            Edit mask
          </button>
        )}
      </div>

      <div ref={containerRef} className="relative min-h-0 flex-1 overflow-hidden">
        {state === "loading" && (
          <p role="status" className="pointer-events-none absolute left-3 top-3 z-10 rounded bg-panel/80 px-2 py-1 text-xs text-muted">
            Loading MRI…
          </p>
        )}
        {state === "error" && (
          <div className="absolute inset-0 z-10 flex flex-col items-start gap-2 bg-black/80 p-4">
            <ErrorMessage error={loadError} title="The MRI could not be shown" />
            <button type="button" className="btn" onClick={() => setAttempt((n) => n + 1)}>
              Try again
            </button>
          </div>
        )}
      </div>

      <div className="space-y-2 border-t border-line bg-panel px-3 py-2">
        <SegmentationLegend visible={visible} onVisible={setVisible} opacity={opacity} onOpacity={setOpacity} recorded={recorded} drawn={editing ? drawn : null} />
        {editing && !readOnly && (
          <MaskEditor
            pen={pen}
            onPen={choosePen}
            canUndo={strokes > 0}
            onUndo={() => sceneRef.current?.undo()}
            reason={reason}
            onReason={setReason}
            saving={saving}
            onSave={() => void save()}
            onCancel={stopEditing}
            problem={problem}
            error={saveError}
            onReload={() => {
              setSaveError(null);
              onMaskSaved();
            }}
          />
        )}
        {!editing && saveError !== null && <ErrorMessage error={saveError} title="Mask editing" />}
      </div>
    </div>
  );
}
