/** Shared test factories: API objects with sensible defaults, overridable per test. */
import type { CaseDetail, FindingOut } from "../api/types";

export function finding(overrides: Partial<FindingOut> = {}): FindingOut {
  return {
    id: "f1",
    kind: "classification",
    subject: "instance",
    instance_id: "i1",
    labels: ["Cardiomegaly"],
    probabilities: { Atelectasis: 0.2, Cardiomegaly: 0.9, Effusion: 0.55 },
    thresholds: { Atelectasis: 0.5, Cardiomegaly: 0.5, Effusion: 0.6 },
    cam_labels: ["Atelectasis", "Cardiomegaly", "Effusion"],
    views: ["cam"],
    volumes_ml: {},
    model: { name: "cxr", network: "densenet121", version: "1", training_run_id: "run-1", synthetic: true },
    input_sha256: "a",
    output_sha256: "b",
    latency_ms: 10,
    created_at: "2026-01-01T00:00:00Z",
    decisions: [],
    current_decision: null,
    ...overrides,
  };
}

/** A head CT haemorrhage finding (``ct_head``): one per series, read slice by slice. */
export function ctFinding(overrides: Partial<FindingOut> = {}): FindingOut {
  return finding({
    id: "ct1",
    subject: "volume",
    instance_id: null,
    labels: ["any", "subdural"],
    probabilities: { any: 0.91, epidural: 0.02, intraparenchymal: 0.1, intraventricular: 0.03, subarachnoid: 0.2, subdural: 0.8 },
    thresholds: { any: 0.5, epidural: 0.5, intraparenchymal: 0.5, intraventricular: 0.5, subarachnoid: 0.5, subdural: 0.5 },
    cam_labels: [],
    views: ["slice_heatmap"],
    model: { name: "ct_head", network: "ct_head_net", version: "1", training_run_id: "run-2", synthetic: true },
    ...overrides,
  });
}

export function caseDetail(overrides: Partial<CaseDetail> = {}): CaseDetail {
  return {
    id: "c1",
    status: "in_review",
    priority: "routine",
    modality: "DX",
    pipeline: "cxr",
    flags: [],
    status_reason: null,
    assignee: { id: "u1", username: "rad" },
    version: 3,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    signed_off_at: null,
    sign_off_note: null,
    study: {
      id: "s1", study_uid: "2.25.1", modality: "DX", source_format: "dicom", series_count: 1, instance_count: 1,
      age_band: "40-49", sex: "F", race_ethnicity: null, study_date: null,
    },
    series: [],
    findings: [finding()],
    history: [],
    ...overrides,
  };
}

