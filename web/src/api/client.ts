/**
 * The typed API client (openapi-fetch over the generated schema) and a fetch for binary
 * resources (DICOM files, PNG overlays, NIfTI volumes). Both send the bearer token, refresh
 * it once on a 401 and, if that fails, end the session (the app then shows the login page
 * and returns to the page afterwards).
 */
import createClient, { type Middleware } from "openapi-fetch";
import { currentAccessToken, expire, refresh, validAccessToken } from "../auth/session";
import { errorFromBody, errorFromResponse } from "./errors";
import type { paths } from "./schema";

const retried = new WeakSet<Request>();

const auth: Middleware = {
  async onRequest({ request }) {
    const token = await validAccessToken();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    retried.add(request);
    return request;
  },
};

export const api = createClient<paths>({
  baseUrl: typeof window === "undefined" ? "http://localhost" : window.location.origin,
  fetch: async (request: Request) => {
    const copy = request.clone();
    const response = await fetch(request);
    if (response.status !== 401 || !currentAccessToken()) return response;
    if (!(await refresh())) {
      expire();
      return response;
    }
    copy.headers.set("Authorization", `Bearer ${currentAccessToken()}`);
    return fetch(copy);
  },
});
api.use(auth);

/** The data of an openapi-fetch result, or throws its ApiError. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    throw errorFromBody(result.response.status, result.error, result.response.statusText);
  }
  return result.data as T;
}

/** An authorised GET of a binary resource; throws ApiError when it is not 2xx. */
export async function fetchBinary(url: string, init: RequestInit = {}): Promise<Response> {
  const send = async () => {
    const token = await validAccessToken();
    const headers = new Headers(init.headers);
    if (token) headers.set("Authorization", `Bearer ${token}`);
    return fetch(url, { ...init, headers });
  };
  let response = await send();
  if (response.status === 401 && currentAccessToken()) {
    if (await refresh()) response = await send();
    else expire();
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}
