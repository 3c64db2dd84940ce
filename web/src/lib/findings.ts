/** What a finding is, for the case page: its title and which viewer shows it. */
import type { FindingOut, ViewerView } from "../api/types";

/** What each served model's findings are, as the case page titles them. */
export const MODEL_TITLES: Record<string, string> = {
  cxr: "chest X-ray labels",
  brats: "brain tumour segmentation",
  ct_head: "head CT haemorrhage",
};

/** The finding's title: its model's, or for a model the workstation does not know yet, the
 * model's name and the finding's kind. */
export function findingTitle(finding: Pick<FindingOut, "kind" | "model">): string {
  return MODEL_TITLES[finding.model.name] ?? `${finding.model.name} ${finding.kind}`;
}

/** Whether the viewer API renders ``view`` from the finding. */
export function hasView(finding: Pick<FindingOut, "views">, view: ViewerView): boolean {
  return finding.views.includes(view);
}
