/** The NiiVue scene of one segmentation finding: the 4-channel MRI as one 4D volume (a
 * channel is a frame) and the label map as NiiVue's drawing layer, which the pen edits.
 *
 * Why the drawing and not a label-coloured overlay volume: NiiVue samples overlays with the
 * background's (linear) interpolation, which blends neighbouring labels' colours (red next to
 * green shows yellow, the enhancing tumour's colour); the drawing is sampled nearest, so each
 * voxel shows exactly its label, the same when viewing and editing. React state drives the
 * scene through these methods; nothing here knows about the API. */
import { NVImage, Niivue, SLICE_TYPE } from "@niivue/niivue";
import { type LabelValue, type LabelVisibility, drawingLut } from "./labels";
import { type RasLayout, type Triple, type Window, channelWindow, rasLayout, rasToNative } from "./voxels";

export type ViewName = "axial" | "coronal" | "sagittal" | "multiplanar" | "render";

const SLICE_TYPES: Record<ViewName, SLICE_TYPE> = {
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
  multiplanar: SLICE_TYPE.MULTIPLANAR,
  render: SLICE_TYPE.RENDER,
};

/** Drawing states NiiVue keeps for undo (the loaded mask and the strokes after it). */
export const MAX_UNDO_STATES = 16;

/** Pen value 0 erases. */
export type PenValue = LabelValue | 0;

export interface SceneSettings {
  channel: number;
  view: ViewName;
  visible: LabelVisibility;
  opacity: number;
}

function dimsOf(image: NVImage): Triple {
  const dims = image.hdr?.dims;
  if (!dims) throw new Error(`${image.name}: no header`);
  return [dims[1] ?? 1, dims[2] ?? 1, dims[3] ?? 1];
}

/** The calibration NiiVue applies to stored values (slope 0 or NaN means none). */
function scaling(image: NVImage): { slope: number; inter: number } {
  const slope = image.hdr?.scl_slope;
  const inter = image.hdr?.scl_inter;
  return {
    slope: slope && Number.isFinite(slope) ? slope : 1,
    inter: slope && Number.isFinite(slope) && inter && Number.isFinite(inter) ? inter : 0,
  };
}

export class MriScene {
  readonly nv: Niivue;
  private readonly canvas: HTMLCanvasElement;
  private volume: NVImage | null = null;
  private labels: NVImage | null = null;
  private windows: Window[] = [];
  private settings: SceneSettings;
  private editing = false;
  /** Called with each drawing change (a stroke, an undo, a load). */
  onDrawingChanged: (action: string) => void = () => {};
  /** Called when NiiVue changes the view itself (its "V" key on the focused canvas). */
  onViewChanged: (view: ViewName) => void = () => {};

  private constructor(nv: Niivue, canvas: HTMLCanvasElement, settings: SceneSettings) {
    this.nv = nv;
    this.canvas = canvas;
    this.settings = settings;
  }

  /** A scene drawing into a new canvas appended to ``container``. */
  static async create(container: HTMLElement, settings: SceneSettings): Promise<MriScene> {
    // A fresh canvas per scene: a canvas whose WebGL context was lost on unmount would hand
    // the same lost context to the next scene (React's development double mount does that).
    const canvas = document.createElement("canvas");
    canvas.className = "absolute inset-0 block h-full w-full";
    canvas.setAttribute("aria-label", "MRI image");
    canvas.setAttribute("role", "img");
    container.appendChild(canvas);
    const nv = new Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.35, 0.66, 1, 0.6],
      crosshairWidth: 0.25,
      show3Dcrosshair: false,
      isColorbar: false,
      isOrientCube: false,
      isResizeCanvas: true,
      dragAndDropEnabled: false,
      logLevel: "warn",
      loadingText: "",
      multiplanarForceRender: true,
      penSize: 1,
      isFilledPen: false,
      maxDrawUndoBitmaps: MAX_UNDO_STATES,
    });
    const scene = new MriScene(nv, canvas, settings);
    nv.onDrawingChanged = (action) => scene.onDrawingChanged(action);
    nv.onSliceTypeChange = (sliceType) => {
      const view = (Object.keys(SLICE_TYPES) as ViewName[]).find((v) => SLICE_TYPES[v] === sliceType);
      if (view && view !== scene.settings.view) {
        scene.settings = { ...scene.settings, view };
        scene.onViewChanged(view);
      }
    };
    await nv.attachToCanvas(canvas);
    return scene;
  }

  /** Shows the 4-channel volume and the label map (gzip or plain NIfTI bytes). Throws when
   * either cannot be read, the volume has fewer than ``channels`` frames, or the grids differ. */
  async load(volumeBytes: ArrayBuffer, labelBytes: ArrayBuffer, channels: number): Promise<void> {
    const volume = await NVImage.loadFromUrl({ url: volumeBytes, name: "volume.nii.gz", colormap: "gray" });
    const frames = volume.nFrame4D ?? 1;
    if (frames < channels) throw new Error(`the MRI volume has ${frames} channel(s), expected ${channels}`);
    const dims = dimsOf(volume);
    const voxels = dims[0] * dims[1] * dims[2];
    const img = volume.img;
    if (!img) throw new Error("the MRI volume has no voxel data");
    const { slope, inter } = scaling(volume);
    this.windows = Array.from({ length: frames }, (_, f) => {
      const raw = channelWindow(img, f * voxels, voxels);
      const ends = [raw.min * slope + inter, raw.max * slope + inter];
      return { min: Math.min(...ends), max: Math.max(...ends) };
    });
    const labels = await this.readLabels(labelBytes, dims);
    this.volume = volume;
    this.applyWindow(volume, this.settings.channel);
    volume.frame4D = Math.min(this.settings.channel, frames - 1);
    this.nv.addVolume(volume);
    this.nv.setSliceType(SLICE_TYPES[this.settings.view]);
    this.showLabels(labels);
  }

  private async readLabels(labelBytes: ArrayBuffer, dims: Triple): Promise<NVImage> {
    const labels = await NVImage.loadFromUrl({ url: labelBytes, name: "labels.nii.gz" });
    const got = dimsOf(labels);
    if (got.join() !== dims.join()) throw new Error(`the label map's grid ${got.join("×")} differs from the volume's ${dims.join("×")}`);
    return labels;
  }

  /** Makes ``labels`` the drawing (dropping any strokes) with the pen off. */
  private showLabels(labels: NVImage): void {
    this.nv.setDrawingEnabled(false);
    this.editing = false;
    if (!this.nv.loadDrawing(labels)) throw new Error("NiiVue refused the label map as a drawing");
    this.labels = labels;
    this.applyLabels();
  }

  /** Replaces the label map (after a saved edit); unsaved strokes are dropped. */
  async replaceLabels(labelBytes: ArrayBuffer): Promise<void> {
    if (!this.volume) throw new Error("no volume loaded");
    this.showLabels(await this.readLabels(labelBytes, dimsOf(this.volume)));
  }

  private applyWindow(volume: NVImage, channel: number): void {
    const window = this.windows[channel];
    if (!window) return;
    volume.cal_min = window.min;
    volume.cal_max = window.max;
  }

  /** Shows channel ``channel`` (0-based frame of the 4D volume) with its own window. */
  setChannel(channel: number): void {
    this.settings = { ...this.settings, channel };
    const volume = this.volume;
    if (!volume) return;
    this.applyWindow(volume, channel);
    if (volume.frame4D === channel) this.nv.updateGLVolume();
    else this.nv.setFrame4D(volume.id, channel);
  }

  setView(view: ViewName): void {
    this.settings = { ...this.settings, view };
    if (this.volume) this.nv.setSliceType(SLICE_TYPES[view]);
  }

  setLabelDisplay(visible: LabelVisibility, opacity: number): void {
    this.settings = { ...this.settings, visible, opacity };
    this.applyLabels();
  }

  private applyLabels(): void {
    const { visible, opacity } = this.settings;
    this.nv.drawLut = drawingLut(visible);
    this.nv.drawOpacity = opacity;
    this.nv.updateGLVolume();
  }

  get isEditing(): boolean {
    return this.editing;
  }

  /** Enables the pen on the shown label map (strokes can be undone back to it). */
  startEditing(pen: PenValue): boolean {
    if (!this.labels || !this.volume || !this.nv.drawBitmap) return false;
    this.editing = true;
    if (this.settings.view === "render") this.setView("axial");
    this.setPen(pen);
    this.nv.setDrawingEnabled(true);
    return true;
  }

  /** Turns the pen off and restores the label map as loaded (unsaved strokes are dropped). */
  stopEditing(): void {
    if (!this.editing || !this.labels) return;
    this.showLabels(this.labels);
  }

  setPen(pen: PenValue): void {
    this.nv.setPenValue(pen, false);
  }

  undo(): void {
    if (this.editing) this.nv.drawUndo();
  }

  /** The stored grid's layout of NiiVue's RAS-ordered drawing. */
  private layout(): RasLayout {
    const volume = this.volume;
    if (!volume?.permRAS) throw new Error("no volume loaded");
    return rasLayout(volume.permRAS, dimsOf(volume));
  }

  /** The drawing as a label map in the stored file's voxel order. */
  drawingInStoredOrder(): Uint8Array {
    const drawing = this.nv.drawBitmap;
    if (!this.editing || !drawing) throw new Error("no drawing open");
    return rasToNative(drawing, this.layout());
  }

  /** Millilitres per voxel of the stored grid. */
  voxelMl(): number {
    const pix = this.volume?.hdr?.pixDims;
    if (!pix) return 0;
    return Math.abs((pix[1] ?? 0) * (pix[2] ?? 0) * (pix[3] ?? 0)) / 1000;
  }

  /** The label map's voxels as shown, strokes included (NiiVue's RAS order). */
  currentLabelVoxels(): ArrayLike<number> | null {
    return this.nv.drawBitmap;
  }

  /** Stops NiiVue's listeners and observers, frees the WebGL context and removes the canvas. */
  destroy(): void {
    this.onDrawingChanged = () => {};
    this.onViewChanged = () => {};
    try {
      this.nv.cleanup();
      this.nv._gl?.getExtension("WEBGL_lose_context")?.loseContext();
    } finally {
      this.canvas.remove();
    }
  }
}
