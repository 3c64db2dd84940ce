/** The case ids of the worklist page last shown, for j/k navigation from a case. */
const KEY = "medvision.worklist.order";

export function rememberOrder(ids: string[]): void {
  sessionStorage.setItem(KEY, JSON.stringify(ids));
}

/** The id ``step`` places away from ``current`` in the remembered order, or null. */
export function neighbour(current: string, step: 1 | -1): string | null {
  let ids: unknown;
  try {
    ids = JSON.parse(sessionStorage.getItem(KEY) ?? "[]");
  } catch {
    return null;
  }
  if (!Array.isArray(ids)) return null;
  const index = ids.indexOf(current);
  const next = index < 0 ? undefined : ids[index + step];
  return typeof next === "string" ? next : null;
}
