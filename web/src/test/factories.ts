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

