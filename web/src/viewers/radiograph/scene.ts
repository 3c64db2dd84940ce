/**
 * The Cornerstone3D side of the radiograph viewer: one StackViewport in a host element, its
 * tools (pan, zoom, window/level, length), and the heat map canvas layered over the image.
 *
 * This module is loaded on demand (RadiographViewer imports it dynamically), so Cornerstone's
 * ~4 MB stay out of the worklist's bundle. Cornerstone is initialised once per page load
 * (``startCornerstone``: one promise for the module's life) and all scenes share one rendering
 * engine; a scene only enables and disables its own viewport and tool group, and gives its
 * image back to Cornerstone's caches when it is destroyed.
 */
import {
  cache,
  Enums,
  eventTarget,
  getRenderingCapabilities,
  getShouldUseCPURendering,
  init as initCore,
  metaData,
  RenderingEngine,
  setUseCPURendering,
  type StackViewport,
  type Types,
} from "@cornerstonejs/core";
import { init as initLoader, prefetchPart10Instance } from "@cornerstonejs/dicom-image-loader";
import { Enums as MetadataEnums, utilities as metadataUtilities } from "@cornerstonejs/metadata";
import {
  addTool,
  annotation,
  Enums as ToolEnums,
  init as initTools,
  LengthTool,
  PanTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
} from "@cornerstonejs/tools";
import { ApiError } from "../../api/errors";
import { imageCorners, type ImageGeometry, mapTransform, sameTransform, type Transform2D } from "./geometry";
import { presetRange, robustRange, type VoiRange, type WindowPreset } from "./presets";

const { MouseBindings } = ToolEnums;
const TOOLS = [PanTool, ZoomTool, WindowLevelTool, LengthTool];

let started: Promise<void> | null = null;
let scenes = 0;
const liveScenes = new Set<RadiographScene>();
/** The image ids the live scenes show, and by how many scenes. */
const shownImageIds = new Map<string, number>();

/**
 * Initialises Cornerstone core, the DICOM image loader (its decode worker) and the tools, once.
 *
 * Rendering: Cornerstone's CPU path where WebGL is a software rasteriser (SwiftShader,
 * llvmpipe — headless Chromium with --disable-gpu, or a workstation without a usable GPU) and
 * the page is at 1 dppx; WebGL otherwise. Measured here in headless Chromium (2 shared cores)
 * on a 2048² 16-bit DX in a 1280×720 page, bench-ui-open.mjs: window/level drag ran at
 * 26–41 fps with WebGL (each frame is rasterised by SwiftShader and read back, ~30 ms) and at
 * 32–60 fps on the CPU path (a LUT over the pixels and one canvas draw, ~17 ms); the first
 * frame after decoding took ~65 ms with WebGL (texture upload) and ~40 ms on the CPU. A real
 * GPU reverses that, so the choice follows the rasteriser. Cornerstone's CPU path draws at the
 * wrong scale when a CSS pixel is not one device pixel (HiDPI screens, browser zoom), so when
 * the pixel ratio leaves 1 (checked before each scene and after each render) Cornerstone is
 * switched to WebGL and the live scenes are rebuilt.
 */
export function startCornerstone(): Promise<void> {
  started ??= (async () => {
    const useCPURendering = getRenderingCapabilities().softwareRasterizer && window.devicePixelRatio === 1;
    // One WebGL context is enough: the workstation shows one radiograph at a time.
    initCore({ rendering: { useCPURendering, webGlContextCount: 1 }, debug: {} });
    // One decode worker: uncompressed frames are only copied, and these machines have 2 cores.
    initLoader({ maxWebWorkers: 1 });
    initTools();
    for (const tool of TOOLS) addTool(tool);
    metaData.addProvider(calibrationForCpuPath, 10_000);
  })();
  return started;
}

/** When the CPU path is in use but a CSS pixel is no longer one device pixel: new scenes
 * render with WebGL, the live ones are rebuilt. */
function checkPixelRatio(): void {
  if (!getShouldUseCPURendering() || window.devicePixelRatio === 1) return;
  setUseCPURendering(false, false);
  for (const scene of liveScenes) scene.renderingChanged();
}

/** The rendering engine of the current mode (CPU or WebGL), shared by the scenes; an engine of
 * the other mode is destroyed once its last scene is. */
interface EngineSlot {
  engine: RenderingEngine;
  cpu: boolean;
  scenes: number;
}
let current: EngineSlot | null = null;
let engines = 0;

function acquireEngine(): EngineSlot {
  const cpu = getShouldUseCPURendering();
  if (!current || current.cpu !== cpu) {
    if (current && current.scenes === 0) current.engine.destroy();
    engines += 1;
    current = { engine: new RenderingEngine(`medvision-radiograph-${engines}`), cpu, scenes: 0 };
  }
  current.scenes += 1;
  return current;
}

function releaseEngine(slot: EngineSlot): void {
  slot.scenes -= 1;
  if (slot !== current && slot.scenes === 0) slot.engine.destroy();
}

/**
 * Cornerstone's CPU path takes a stack image's calibration from the calibration module only;
 * its WebGL path also reads ``calibratedPixelSpacing`` (Pixel Spacing / Imager Pixel Spacing
 * as PS3.3 defines them for projection radiographs). A DX has no Image Position (Patient), so
 * without this the CPU path would label every length "px" (its value already in mm). The
 * same calibration object is handed to both paths.
 */
function calibrationForCpuPath(type: string, imageId: unknown): unknown {
  if (type !== "calibrationModule" || typeof imageId !== "string" || !shownImageIds.has(imageId)) return undefined;
  return metaData.get("calibratedPixelSpacing", imageId);
}

/** What a scene reports to the React component (outside React's render cycle). */
export interface SceneListener {
  /** After every render of the viewport (Cornerstone's IMAGE_RENDERED). */
  rendered(): void;
  /** The window changed (drag, preset, reset). */
  voi(range: VoiRange): void;
  /** The number of length measurements on the image changed. */
  measurements(count: number): void;
  /** The rendering mode changed under the scene: destroy it and create a new one. */
  rebuild(): void;
}

/** An image that could not be decoded or shown, with a stable code for the error message (an
 * ApiError so that ErrorMessage shows that code; status 0: no HTTP answer is involved). */
export class ImageLoadError extends ApiError {
  constructor(code: string, message: string) {
    super(0, code, message);
    this.name = "ImageLoadError";
  }
}

/** Cornerstone's loaders reject with ``{error}`` objects, strings or Errors: one message. */
function reason(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (error && typeof error === "object" && "error" in error) return reason((error as { error: unknown }).error);
  return String(error);
}

type CamImage = CanvasImageSource & { width: number; height: number };

export class RadiographScene {
  private readonly toolGroupId: string;
  private readonly overlay: HTMLCanvasElement;
  private readonly resizeObserver: ResizeObserver;
  private imageId: string | null = null;
  private geometry: ImageGeometry | null = null;
  private ownVoi: VoiRange | null = null;
  private valueRange: VoiRange | null = null;
  private monochrome1 = false;
  /** The image's own polarity: inverted for MONOCHROME1. */
  private ownInvert = false;
  private cam: CamImage | null = null;
  private camVisible = false;
  private drawnTransform: Transform2D | null = null;
  private drawnCam: CamImage | null = null;
  private firstFrame: (() => void) | null = null;
  private lengthActive = false;
  private resizeFrame = 0;
  private destroyed = false;

  private constructor(
    /** The scene's own element (Cornerstone's viewport element), inside the host. */
    private readonly element: HTMLDivElement,
    private readonly slot: EngineSlot,
    private readonly viewportId: string,
    private readonly viewport: StackViewport,
    private readonly listener: SceneListener,
  ) {
    liveScenes.add(this);
    this.toolGroupId = `${viewportId}-tools`;
    const tools = ToolGroupManager.createToolGroup(this.toolGroupId);
    if (!tools) throw new ImageLoadError("viewer_failed", `the tool group ${this.toolGroupId} exists already`);
    for (const tool of TOOLS) tools.addTool(tool.toolName);
    tools.addViewport(viewportId, slot.engine.id);
    tools.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    tools.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    tools.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }, { mouseButton: MouseBindings.Auxiliary }] });
    tools.setToolPassive(LengthTool.toolName);

    // The heat map sits right above Cornerstone's canvas and below its SVG annotation layer
    // (so length measurements stay on top of it); it never takes the mouse.
    this.overlay = document.createElement("canvas");
    this.overlay.dataset.testid = "cam-overlay";
    this.overlay.dataset.visible = "false";
    this.overlay.setAttribute("aria-hidden", "true");
    Object.assign(this.overlay.style, { position: "absolute", left: "0", top: "0", width: "100%", height: "100%", pointerEvents: "none", visibility: "hidden" });
    const canvas = element.querySelector("canvas.cornerstone-canvas");
    if (canvas) canvas.after(this.overlay);
    else element.append(this.overlay);

    element.addEventListener(Enums.Events.IMAGE_RENDERED, this.onRendered);
    element.addEventListener(Enums.Events.VOI_MODIFIED, this.onVoi);
    element.addEventListener("contextmenu", this.onContextMenu);
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, this.onAnnotations);
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_REMOVED, this.onAnnotations);
    this.resizeObserver = new ResizeObserver(this.onResize);
    this.resizeObserver.observe(element);
  }

  /**
   * A scene filling ``host`` (a positioned element). It draws into an element of its own, so a
   * scene still being torn down (an image switch, React's double effects in development)
   * never shares Cornerstone's element, canvas or SVG layer with the next one.
   */
  static async create(host: HTMLElement, listener: SceneListener): Promise<RadiographScene> {
    await startCornerstone();
    checkPixelRatio();
    scenes += 1;
    const viewportId = `radiograph-${scenes}`;
    const element = document.createElement("div");
    Object.assign(element.style, { position: "absolute", inset: "0" });
    host.append(element);
    const slot = acquireEngine();
    slot.engine.enableElement({ viewportId, type: Enums.ViewportType.STACK, element, defaultOptions: { background: [0, 0, 0] } });
    return new RadiographScene(element, slot, viewportId, slot.engine.getViewport(viewportId) as StackViewport, listener);
  }

  /**
   * Shows a DICOM Part-10 file (the bytes, fetched with the user's token) as ``imageId``;
   * resolves once the first frame showing the image has been rendered.
   *
   * The bytes reach Cornerstone's DICOM image loader through its ``prefetchPart10Instance``
   * (v5): the file is registered as the metadata and pixel source of a ``wadouri:`` image id,
   * so the loader's own fetch (an XMLHttpRequest that would need the bearer token added in
   * ``beforeSend``, without the refresh-on-401 of ``fetchBinary``) never runs, and no Blob +
   * FileReader copy is made as with the ``dicomfile:`` file manager.
   */
  async show(bytes: ArrayBuffer, imageId: string): Promise<void> {
    this.imageId = imageId;
    shownImageIds.set(imageId, (shownImageIds.get(imageId) ?? 0) + 1);
    try {
      await prefetchPart10Instance(imageId, bytes);
      if (this.destroyed) return;
      const painted = new Promise<void>((resolve) => {
        this.firstFrame = resolve;
      });
      await this.viewport.setStack([imageId]);
      if (this.destroyed) return;
      this.readImage();
      this.viewport.render();
      await painted;
    } catch (error) {
      if (this.destroyed) return;
      if (error instanceof ImageLoadError) throw error;
      throw new ImageLoadError("image_decode_failed", `the DICOM image could not be decoded: ${reason(error)}`);
    }
  }

  private readImage(): void {
    const image = this.viewport.getCornerstoneImage();
    const data = this.viewport.getImageData();
    if (!image || !data) throw new ImageLoadError("image_decode_failed", "the DICOM file holds no image the viewer can show");
    this.geometry = { origin: data.origin, direction: data.direction, spacing: data.spacing, columns: image.columns, rows: image.rows };
    this.monochrome1 = image.photometricInterpretation === "MONOCHROME1";
    // The CPU path shows MONOCHROME1 inverted (from image.invert) but reports invert: false and
    // resets to it; state the image's own polarity explicitly so both paths agree.
    this.ownInvert = image.invert === true || this.monochrome1;
    this.viewport.setProperties({ invert: this.ownInvert });
    const voi = this.viewport.getProperties().voiRange;
    this.ownVoi = voi ? { lower: voi.lower, upper: voi.upper } : null;
    this.valueRange = null;
    if (this.ownVoi) this.listener.voi(this.ownVoi);
  }

  /** True when the image carries Pixel Spacing or Imager Pixel Spacing (lengths in mm). */
  hasPixelSpacing(): boolean {
    return this.viewport.getImageData()?.hasPixelSpacing !== false;
  }

  /** Applies a window preset (see presets.ts). */
  applyPreset(preset: WindowPreset): void {
    const own = this.ownVoi;
    if (!own) return;
    this.viewport.setProperties({ voiRange: presetRange(preset, own, this.imageValueRange() ?? own, this.monochrome1) });
    this.viewport.render();
  }

  /** The 1st–99th percentile of the image's values in modality units, computed once. */
  private imageValueRange(): VoiRange | null {
    if (this.valueRange) return this.valueRange;
    const image = this.viewport.getCornerstoneImage();
    if (!image) return null;
    const scaled = image.preScale?.scaled === true;
    const slope = image.slope || 1;
    const intercept = image.intercept || 0;
    this.valueRange = robustRange(image.getPixelData(), 0.01, 65_536, scaled ? (v) => v : (v) => v * slope + intercept);
    return this.valueRange;
  }

  /** Swaps dark and bright. */
  toggleInvert(): void {
    this.viewport.setProperties({ invert: !this.viewport.getProperties().invert });
    this.viewport.render();
  }

  /** Back to the first view: fitted and centred, the image's own window and polarity. */
  reset(): void {
    this.viewport.resetCamera();
    // Not resetProperties(): on the CPU path it drops MONOCHROME1's inversion, and on the
    // WebGL path its transfer-function reset can leave the frame it draws un-inverted.
    this.viewport.setProperties({ voiRange: this.ownVoi ?? undefined, invert: this.ownInvert });
    this.viewport.render();
  }

  /** Left-drag draws lengths (true) or pans (false); the middle button pans either way. */
  setLengthMode(active: boolean): void {
    const tools = ToolGroupManager.getToolGroup(this.toolGroupId);
    if (!tools || active === this.lengthActive) return;
    this.lengthActive = active;
    tools.setToolPassive(PanTool.toolName);
    if (active) {
      tools.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      tools.setToolActive(LengthTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    } else {
      tools.setToolPassive(LengthTool.toolName);
      tools.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }, { mouseButton: MouseBindings.Auxiliary }] });
    }
  }

  /** Removes the length measurements drawn on this image. */
  clearMeasurements(): void {
    this.removeMeasurements();
    this.viewport.render();
    this.listener.measurements(0);
  }

  private removeMeasurements(): void {
    for (const a of this.lengthAnnotations()) if (a.annotationUID) annotation.state.removeAnnotation(a.annotationUID);
  }

  private lengthAnnotations() {
    return (annotation.state.getAnnotations(LengthTool.toolName, this.element) ?? []).filter((a) => a.metadata?.referencedImageId === this.imageId);
  }

  /** The coloured heat map to stretch over the whole image, or null for none. */
  setCam(cam: CamImage | null): void {
    this.cam = cam;
    this.drawOverlay();
  }

  /** Shows or hides the heat map and sets its opacity (0–1). */
  setCamDisplay(visible: boolean, opacity: number): void {
    this.camVisible = visible;
    this.overlay.style.opacity = String(Math.min(1, Math.max(0, opacity)));
    this.drawOverlay();
  }

  /** Redraws the heat map where the image now is, when that moved or the map changed. */
  private drawOverlay(): void {
    const canvas = this.overlay;
    const shown = this.camVisible && this.cam !== null && this.geometry !== null;
    canvas.style.visibility = shown ? "visible" : "hidden";
    canvas.dataset.visible = String(shown);
    const cam = this.cam;
    const g = this.geometry;
    if (!cam || !g) return;
    const scale = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * scale));
    const height = Math.max(1, Math.round(canvas.clientHeight * scale));
    const resized = canvas.width !== width || canvas.height !== height;
    if (resized) {
      canvas.width = width;
      canvas.height = height;
    }
    const corners = imageCorners(g);
    const onCanvas = (p: readonly number[]) => this.viewport.worldToCanvas([p[0] ?? 0, p[1] ?? 0, p[2] ?? 0] as Types.Point3);
    const transform = mapTransform(onCanvas(corners.topLeft), onCanvas(corners.topRight), onCanvas(corners.bottomLeft), cam.width, cam.height, scale);
    if (!resized && this.drawnCam === cam && sameTransform(transform, this.drawnTransform)) return;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.setTransform(...transform);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(cam, 0, 0);
    this.drawnTransform = transform;
    this.drawnCam = cam;
  }

  /** Called when Cornerstone's rendering mode changed: the owner rebuilds the scene. */
  renderingChanged(): void {
    if (this.destroyed) return;
    cancelAnimationFrame(this.resizeFrame);
    this.resizeObserver.disconnect();
    this.listener.rebuild();
  }

  private onRendered = () => {
    if (this.destroyed) return;
    checkPixelRatio();
    this.drawOverlay();
    this.listener.rendered();
    if (this.firstFrame && this.viewport.getCornerstoneImage()) {
      const painted = this.firstFrame;
      this.firstFrame = null;
      painted();
    }
  };

  private onVoi = (event: Event) => {
    const range = (event as CustomEvent<Partial<{ range: VoiRange }>>).detail.range;
    if (range) this.listener.voi({ lower: range.lower, upper: range.upper });
  };

  private onAnnotations = () => {
    if (!this.destroyed) this.listener.measurements(this.lengthAnnotations().length);
  };

  private onContextMenu = (event: Event) => event.preventDefault();

  private onResize = () => {
    cancelAnimationFrame(this.resizeFrame);
    this.resizeFrame = requestAnimationFrame(() => {
      if (!this.destroyed) this.slot.engine.resize(true, true);
    });
  };

  /** Disables the viewport and its tool group, removes the scene's element and releases the
   * image: nothing of this scene stays behind. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.firstFrame = null;
    cancelAnimationFrame(this.resizeFrame);
    this.resizeObserver.disconnect();
    this.element.removeEventListener(Enums.Events.IMAGE_RENDERED, this.onRendered);
    this.element.removeEventListener(Enums.Events.VOI_MODIFIED, this.onVoi);
    this.element.removeEventListener("contextmenu", this.onContextMenu);
    eventTarget.removeEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, this.onAnnotations);
    eventTarget.removeEventListener(ToolEnums.Events.ANNOTATION_REMOVED, this.onAnnotations);
    this.removeMeasurements();
    ToolGroupManager.destroyToolGroup(this.toolGroupId);
    this.slot.engine.disableElement(this.viewportId);
    releaseEngine(this.slot);
    liveScenes.delete(this);
    this.element.remove();
    if (this.imageId) this.releaseImage(this.imageId);
  }

  /** Drops the image from Cornerstone's image cache and metadata store once no scene shows it
   * (the registered Part-10 file would otherwise stay for the page's life: megabytes per
   * image opened). */
  private releaseImage(imageId: string): void {
    const showing = (shownImageIds.get(imageId) ?? 1) - 1;
    if (showing > 0) {
      shownImageIds.set(imageId, showing);
      return;
    }
    shownImageIds.delete(imageId);
    if (cache.getImageLoadObject(imageId)) cache.removeImageLoadObject(imageId, { force: true });
    metadataUtilities.clearTypedCacheData(MetadataEnums.MetadataModules.NATURALIZED, imageId);
  }
}
