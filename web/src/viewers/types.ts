/** What the case page hands its viewers. */
import type { FindingOut, InstanceOut } from "../api/types";
import type { OverlayState } from "../components/FindingsPanel";

export interface RadiographViewerProps {
  caseId: string;
  /** The DICOM image shown. */
  instance: InstanceOut;
  /** The classification finding of that image (its CAMs), if the AI read it. */
  finding: FindingOut | null;
  /** Which label's heat map, whether shown, and how opaque. */
  overlay: OverlayState;
}

export interface MriViewerProps {
  caseId: string;
  /** A segmentation finding: its 4-channel volume and label map. */
  finding: FindingOut;
  /** True when the user may not change the mask (not the holder, or signed off). */
  readOnly: boolean;
  /** Called after an edited mask was saved (an ``edit`` decision now exists). */
  onMaskSaved: () => void;
}

export interface HeadCtViewerProps {
  caseId: string;
  /** A finding read slice by slice (``slice_heatmap`` view): its per-slice table and maps. */
  finding: FindingOut;
  /** Whether the slice heat maps are shown, and how opaque (the label is not used). */
  overlay: OverlayState;
}
