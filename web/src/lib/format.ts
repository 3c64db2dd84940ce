/** Display helpers shared by the pages. */
export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatPercent(p: number): string {
  return `${(p * 100).toFixed(1)}%`;
}

export const STATUS_LABEL: Record<string, string> = {
  received: "Received",
  queued: "Queued",
  inferred: "AI ready",
  in_review: "In review",
  signed_off: "Signed off",
  failed: "Failed",
};
