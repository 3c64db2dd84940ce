/** The control plane's error body ({code, message, request_id, detail}) as a JS error. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | null;
  readonly detail: unknown;

  constructor(status: number, code: string, message: string, requestId: string | null = null, detail: unknown = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.detail = detail;
  }

  /** True for 409s: someone else changed the record since it was loaded. */
  get isConflict(): boolean {
    return this.status === 409;
  }
}

/** An ApiError from a failed fetch Response, whatever its body holds. */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await response.clone().json();
  } catch {
    body = null;
  }
  return errorFromBody(response.status, body, response.statusText);
}

/** An ApiError from a status and a decoded body (the API's JSON error or anything else). */
export function errorFromBody(status: number, body: unknown, fallback = "request failed"): ApiError {
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    const code = typeof b.code === "string" ? b.code : `http_${status}`;
    const message = typeof b.message === "string" ? b.message : typeof b.detail === "string" ? b.detail : fallback;
    const requestId = typeof b.request_id === "string" ? b.request_id : null;
    return new ApiError(status, code, message, requestId, b.detail ?? null);
  }
  return new ApiError(status, `http_${status}`, fallback || `HTTP ${status}`);
}
