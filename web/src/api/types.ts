/** Shorthands for the API's schemas (generated from the control plane's OpenAPI document). */
import type { components } from "./schema";

type Schemas = components["schemas"];
export type CaseOut = Schemas["CaseOut"];
export type CaseDetail = Schemas["CaseDetail"];
export type CasePage = Schemas["CasePage"];
export type CaseStatus = Schemas["CaseStatus"];
export type Priority = Schemas["Priority"];
export type FindingOut = Schemas["FindingOut"];
export type ViewerView = Schemas["ViewerView"];
export type SliceTable = Schemas["SliceTableOut"];
export type SliceRow = Schemas["SliceOut"];
export type DecisionOut = Schemas["DecisionOut"];
export type DecisionIn = Schemas["DecisionIn"];
export type DecisionAction = Schemas["DecisionAction"];
export type InstanceOut = Schemas["InstanceOut"];
export type SeriesOut = Schemas["SeriesOut"];
export type UserOut = Schemas["UserOut"];
export type Role = Schemas["Role"];
export type AuditEntryOut = Schemas["AuditEntryOut"];
export type VerifyOut = Schemas["VerifyOut"];
export type ServedModel = Schemas["ServedModel"];
export type SegmentationVolume = Schemas["SegmentationVolume"];
export type HistoryEntry = Schemas["HistoryEntry"];
export type TokenResponse = Schemas["TokenResponse"];
