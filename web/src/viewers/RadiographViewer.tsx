import type { RadiographViewerProps } from "./types";

export function RadiographViewer({ instance }: RadiographViewerProps) {
  return <div className="h-full w-full bg-black" data-instance={instance.id} />;
}
