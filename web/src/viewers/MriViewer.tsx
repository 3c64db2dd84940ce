import type { MriViewerProps } from "./types";

export function MriViewer({ finding }: MriViewerProps) {
  return <div className="h-full w-full bg-black" data-finding={finding.id} />;
}
