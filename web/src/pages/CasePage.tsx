/** One case: the images (radiograph, head CT or MRI viewer, as the findings' views say), the
 * AI findings with their decisions,
 * the case history and sign-off. Read-only once signed off or when not held by this user. */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, unwrap } from "../api/client";
import type { CaseDetail, FindingOut, InstanceOut } from "../api/types";
import { useAuth } from "../auth/AuthProvider";
import { PriorityBadge, StatusBadge, SyntheticBanner } from "../components/Badges";
import { CaseAdminControls } from "../components/CaseAdminControls";
import { DecisionForm, type DecisionFormHandle } from "../components/DecisionForm";
import { ErrorMessage } from "../components/ErrorMessage";
import { FindingsPanel, type OverlayState } from "../components/FindingsPanel";
import { Thumbnail } from "../components/Thumbnail";
import { hasSyntheticModel, labelRows, signOffBlocker } from "../lib/decisions";
import { findingTitle, hasView } from "../lib/findings";
import { formatDateTime } from "../lib/format";
import { useShortcuts } from "../lib/keyboard";
import { neighbour } from "../lib/worklistOrder";
import { HeadCtViewer } from "../viewers/HeadCtViewer";
import { MriViewer } from "../viewers/MriViewer";
import { RadiographViewer } from "../viewers/RadiographViewer";

const PENDING_POLL_MS = 3000;

/** The DICOM images of the case, in series order (NIfTI volumes have no rows/columns). */
function dicomImages(detail: CaseDetail): InstanceOut[] {
  return (detail.series ?? []).flatMap((s) => s.instances).filter((i) => i.rows != null && i.columns != null);
}

export function CasePage() {
  const { caseId = "" } = useParams();
  const { user } = useAuth();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const caseQuery = useQuery({
    queryKey: ["case", caseId],
    queryFn: async () => unwrap(await api.GET("/api/cases/{case_id}", { params: { path: { case_id: caseId } } })),
    refetchInterval: (query) => {
      const status = query.state.data?.status;
      return status === "queued" || status === "received" ? PENDING_POLL_MS : false;
    },
  });
  const reload = () => void queryClient.invalidateQueries({ queryKey: ["case", caseId] });

  useShortcuts({
    j: () => {
      const next = neighbour(caseId, 1);
      if (next) navigate(`/cases/${next}`);
    },
    k: () => {
      const previous = neighbour(caseId, -1);
      if (previous) navigate(`/cases/${previous}`);
    },
  });

  if (caseQuery.isPending)
    return (
      <p role="status" className="p-6 text-muted">
        Loading case…
      </p>
    );
  if (caseQuery.isError)
    return (
      <div className="space-y-3 p-6">
        <ErrorMessage error={caseQuery.error} title="The case could not be loaded" />
        <Link to="/" className="text-accent underline">
          Back to the worklist
        </Link>
      </div>
    );
  return <CaseView key={caseId} detail={caseQuery.data} userId={user?.id ?? ""} role={user?.role ?? ""} onChanged={reload} />;
}

function CaseView({ detail, userId, role, onChanged }: { detail: CaseDetail; userId: string; role: string; onChanged: () => void }) {
  const queryClient = useQueryClient();
  const images = useMemo(() => dicomImages(detail), [detail]);
  const segmentation = (detail.findings ?? []).find((f) => hasView(f, "segmentation")) ?? null;
  // A series read slice by slice (head CT): one finding for the whole series, no instance.
  const sliceFinding = (detail.findings ?? []).find((f) => hasView(f, "slice_heatmap")) ?? null;
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const instance = images.find((i) => i.id === selectedId) ?? images[0] ?? null;
  const classification = instance ? ((detail.findings ?? []).find((f) => f.kind === "classification" && f.instance_id === instance.id) ?? null) : null;
  const selectedFinding: FindingOut | null = segmentation ?? sliceFinding ?? classification;
  const holder = detail.assignee?.id === userId && role === "radiologist";
  const readOnly = detail.status === "signed_off" || !holder;

  const [overlay, setOverlay] = useState<OverlayState>({ label: null, visible: true, opacity: 0.45 });
  useEffect(() => {
    if (classification && (overlay.label === null || !classification.cam_labels.includes(overlay.label))) {
      const top = labelRows(classification)[0]?.label ?? null;
      setOverlay((o) => ({ ...o, label: top }));
    }
  }, [classification, overlay.label]);

  const decisionRef = useRef<DecisionFormHandle>(null);
  useShortcuts({
    o: () => setOverlay((o) => ({ ...o, visible: !o.visible })),
    a: () => decisionRef.current?.accept(),
    r: () => decisionRef.current?.startReject(),
  });

  const claim = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/cases/{case_id}/claim", { params: { path: { case_id: detail.id } } })),
    onSuccess: () => {
      onChanged();
      void queryClient.invalidateQueries({ queryKey: ["cases"] });
    },
  });

  return (
    <div className="flex h-full min-h-0 flex-col">
      <div className="flex flex-wrap items-center gap-3 border-b border-line bg-panel px-4 py-2 text-sm">
        <Link to="/" className="text-accent underline">
          Worklist
        </Link>
        <h1 className="font-semibold">
          Case <span className="font-mono">{detail.id.slice(0, 8)}</span>
        </h1>
        <PriorityBadge priority={detail.priority} />
        <StatusBadge status={detail.status} />
        <span className="font-mono">{detail.modality}</span>
        <span className="text-muted">{[detail.study.sex, detail.study.age_band].filter(Boolean).join(" · ")}</span>
        <span className="text-muted">received {formatDateTime(detail.created_at)}</span>
        <span>
          {detail.assignee ? (
            <>
              held by <strong>{detail.assignee.username}</strong>
            </>
          ) : (
            <span className="text-muted">unassigned</span>
          )}
        </span>
        {role === "radiologist" && !detail.assignee && detail.status !== "signed_off" && (
          <button type="button" className="btn-primary" onClick={() => claim.mutate()} disabled={claim.isPending}>
            Claim
          </button>
        )}
        {detail.flags.length > 0 && <span className="text-xs text-warn">flags: {detail.flags.join(", ")}</span>}
        {role === "admin" && <CaseAdminControls detail={detail} onChanged={onChanged} />}
      </div>
      {hasSyntheticModel(detail) && <SyntheticBanner />}
      <ErrorMessage error={claim.error} title="Claim failed" />
      <StatusNotice detail={detail} />
      {detail.addendum_of && (
        <p role="status" className="bg-warn/10 px-4 py-1 text-sm text-warn">
          Addendum: images that arrived after{" "}
          <Link to={`/cases/${detail.addendum_of}`} className="underline">
            the signed-off report
          </Link>{" "}
          of this study.
        </p>
      )}
      {detail.status === "signed_off" && (
        <p role="status" className="bg-ok/10 px-4 py-1 text-sm text-ok">
          Signed off {formatDateTime(detail.signed_off_at)}
          {detail.sign_off_note ? ` — ${detail.sign_off_note}` : ""}. This case is read-only.
        </p>
      )}

      <div className="flex min-h-0 flex-1">
        <section aria-label="Images" className="flex min-w-0 flex-1 flex-col bg-black">
          {segmentation ? (
            <MriViewer caseId={detail.id} finding={segmentation} readOnly={readOnly} onMaskSaved={onChanged} />
          ) : sliceFinding ? (
            <HeadCtViewer caseId={detail.id} finding={sliceFinding} overlay={overlay} />
          ) : instance ? (
            <>
              <div className="min-h-0 flex-1">
                <RadiographViewer caseId={detail.id} instance={instance} finding={classification} overlay={overlay} />
              </div>
              {images.length > 1 && (
                <nav aria-label="Images of the case" className="flex gap-2 overflow-x-auto border-t border-line bg-panel p-2">
                  {images.map((image, n) => (
                    <button
                      key={image.id}
                      type="button"
                      className={`flex flex-col items-center gap-1 rounded border p-1 text-xs ${image.id === instance.id ? "border-accent" : "border-line"}`}
                      aria-pressed={image.id === instance.id}
                      aria-label={`Image ${n + 1}`}
                      onClick={() => setSelectedId(image.id)}
                    >
                      <Thumbnail caseId={detail.id} instanceId={image.id} label={`Image ${n + 1}`} />
                      <span aria-hidden="true">Image {n + 1}</span>
                    </button>
                  ))}
                </nav>
              )}
            </>
          ) : (
            <p className="m-auto text-muted">This case has no image the viewer can show.</p>
          )}
        </section>

        <aside aria-label="AI findings and review" className="w-96 shrink-0 space-y-4 overflow-y-auto border-l border-line bg-panel p-3">
          {(detail.findings ?? []).length === 0 && <p className="text-sm text-muted">No AI findings for this case.</p>}
          {(detail.findings ?? []).map((finding, n) => {
            const selected = finding.id === selectedFinding?.id;
            return (
              <article
                key={finding.id}
                aria-label={`Finding ${n + 1}`}
                className={`space-y-3 rounded border p-2 ${selected ? "border-accent" : "border-line"}`}
                data-finding-id={finding.id}
              >
                <header className="flex items-start justify-between gap-2">
                  <div>
                    <h2 className="text-sm font-semibold">
                      Finding {n + 1}: {findingTitle(finding)}
                    </h2>
                    <ModelIdentity finding={finding} />
                  </div>
                  {!selected && finding.instance_id && (
                    <button type="button" className="btn text-xs" onClick={() => setSelectedId(finding.instance_id)}>
                      Show
                    </button>
                  )}
                </header>
                {selected && finding.kind === "classification" && <FindingsPanel finding={finding} overlay={overlay} onOverlay={setOverlay} />}
                {finding.kind === "segmentation" && <RegionVolumes finding={finding} />}
                <DecisionForm
                  ref={selected ? decisionRef : undefined}
                  caseId={detail.id}
                  finding={finding}
                  readOnly={readOnly}
                  onDecided={onChanged}
                  onReload={onChanged}
                />
              </article>
            );
          })}
          <SignOff detail={detail} userId={userId} onSignedOff={onChanged} />
          <CaseHistory detail={detail} />
        </aside>
      </div>
    </div>
  );
}

function ModelIdentity({ finding }: { finding: FindingOut }) {
  const m = finding.model;
  return (
    <p className="text-xs text-muted" data-testid="model-identity">
      model {m.name} · version {m.version} · network {m.network} · training run {m.training_run_id ?? "not recorded"}
      {m.synthetic && <strong className="ml-1 text-danger">SYNTHETIC</strong>}
    </p>
  );
}

function RegionVolumes({ finding }: { finding: FindingOut }) {
  const volumes = finding.current_decision?.volumes_ml ?? finding.volumes_ml;
  return (
    <dl className="grid grid-cols-2 gap-x-2 text-xs" aria-label="Tumour volumes">
      {Object.entries(volumes).map(([region, ml]) => (
        <div key={region} className="contents">
          <dt className="text-muted">{region.replaceAll("_", " ")}</dt>
          <dd>{ml.toFixed(2)} ml</dd>
        </div>
      ))}
    </dl>
  );
}

function StatusNotice({ detail }: { detail: CaseDetail }) {
  if (detail.status === "queued" || (detail.status === "received" && detail.pipeline))
    return (
      <p role="status" className="bg-raised px-4 py-1 text-sm text-muted">
        Queued for AI reading{detail.status_reason ? `: ${detail.status_reason}` : ""}. This page updates by itself.
      </p>
    );
  if (detail.status === "failed" || detail.flags.includes("follow_up_failed"))
    return (
      <p role="alert" className="bg-danger/10 px-4 py-1 text-sm text-danger">
        AI reading failed{detail.status_reason ? `: ${detail.status_reason}` : ""}.
      </p>
    );
  return null;
}

function SignOff({ detail, userId, onSignedOff }: { detail: CaseDetail; userId: string; onSignedOff: () => void }) {
  const [note, setNote] = useState("");
  const blocker = signOffBlocker(detail, userId);
  const signOff = useMutation({
    mutationFn: async () =>
      unwrap(
        await api.POST("/api/cases/{case_id}/sign-off", {
          params: { path: { case_id: detail.id } },
          body: { version: detail.version, note: note.trim() || null },
        }),
      ),
    onSuccess: onSignedOff,
  });
  if (detail.status === "signed_off") return null;
  return (
    <section aria-label="Sign-off" className="space-y-2 border-t border-line pt-3 text-sm">
      <label className="block">
        <span className="mb-1 block text-xs text-muted">Sign-off note</span>
        <textarea className="input w-full" rows={2} value={note} onChange={(e) => setNote(e.target.value)} maxLength={2000} disabled={blocker !== null} />
      </label>
      <button type="button" className="btn-primary" disabled={blocker !== null || signOff.isPending} onClick={() => signOff.mutate()} aria-describedby="sign-off-blocker">
        Sign off
      </button>
      {blocker && (
        <p id="sign-off-blocker" className="text-xs text-muted">
          {blocker}
        </p>
      )}
      <ErrorMessage error={signOff.error} title="Sign-off failed" />
    </section>
  );
}

function CaseHistory({ detail }: { detail: CaseDetail }) {
  return (
    <details className="border-t border-line pt-3 text-xs">
      <summary className="cursor-pointer text-muted">Case history ({(detail.history ?? []).length})</summary>
      <ol className="mt-1 space-y-0.5">
        {(detail.history ?? []).map((h) => (
          <li key={h.id}>
            {formatDateTime(h.occurred_at)} · {h.action} · {h.actor ?? "system"} · {h.outcome}
          </li>
        ))}
      </ol>
    </details>
  );
}
