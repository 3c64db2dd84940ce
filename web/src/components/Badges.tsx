/** Status and priority badges of the worklist and the case header. */
import { STATUS_LABEL } from "../lib/format";

const STATUS_STYLE: Record<string, string> = {
  received: "border-line text-muted",
  queued: "border-line text-muted",
  inferred: "border-accent text-accent",
  in_review: "border-warn text-warn",
  signed_off: "border-ok text-ok",
  failed: "border-danger text-danger",
};

export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`inline-block rounded border px-1.5 py-0.5 text-xs ${STATUS_STYLE[status] ?? "border-line"}`}>
      {STATUS_LABEL[status] ?? status}
    </span>
  );
}

export function PriorityBadge({ priority }: { priority: string }) {
  if (priority === "stat")
    return <span className="inline-block rounded bg-danger px-1.5 py-0.5 text-xs font-bold text-bg">STAT</span>;
  if (priority === "urgent")
    return <span className="inline-block rounded border border-warn px-1.5 py-0.5 text-xs font-semibold text-warn">URGENT</span>;
  return <span className="inline-block px-1.5 py-0.5 text-xs text-muted">routine</span>;
}

export function SyntheticBanner() {
  return (
    <div role="status" className="rounded bg-danger px-3 py-1.5 text-center text-sm font-bold tracking-wide text-bg">
      SYNTHETIC DEMO MODEL — not for clinical use
    </div>
  );
}
