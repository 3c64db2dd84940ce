/**
 * The signed-in session: the access token lives in memory only; the rotating refresh token
 * in sessionStorage (this tab only, gone when it closes) so that a reload keeps the user
 * signed in. The access token is refreshed shortly before it expires.
 */
import { ApiError, errorFromResponse } from "../api/errors";
import type { TokenResponse } from "../api/types";

const REFRESH_KEY = "medvision.refresh";
const REFRESH_MARGIN_S = 60;

type Listener = (signedIn: boolean) => void;

let accessToken: string | null = null;
let expiresAt = 0;
let refreshTimer: ReturnType<typeof setTimeout> | null = null;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<Listener>();

function notify(): void {
  for (const listener of listeners) listener(accessToken !== null);
}

/** Calls ``listener`` whenever the user signs in or out; returns the unsubscribe. */
export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function currentAccessToken(): string | null {
  return accessToken;
}

function store(tokens: TokenResponse): void {
  accessToken = tokens.access_token;
  expiresAt = Date.now() + tokens.expires_in * 1000;
  if (tokens.refresh_token) sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  if (refreshTimer) clearTimeout(refreshTimer);
  const delayMs = Math.max(5, tokens.expires_in - REFRESH_MARGIN_S) * 1000;
  refreshTimer = setTimeout(() => void refresh(), Math.min(delayMs, 2 ** 31 - 1));
  notify();
}

function clear(): void {
  accessToken = null;
  expiresAt = 0;
  sessionStorage.removeItem(REFRESH_KEY);
  if (refreshTimer) clearTimeout(refreshTimer);
  refreshTimer = null;
  notify();
}

async function tokenRequest(form: Record<string, string>): Promise<TokenResponse> {
  const response = await fetch("/api/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams(form),
  });
  if (!response.ok) throw await errorFromResponse(response);
  return (await response.json()) as TokenResponse;
}

/** Signs in with the password grant; throws ApiError (401 invalid_credentials, 429 rate_limited, ...). */
export async function login(username: string, password: string): Promise<void> {
  store(await tokenRequest({ grant_type: "password", username, password }));
}

/** A fresh access token from the stored refresh token; false (and signed out) when that fails. */
export function refresh(): Promise<boolean> {
  if (refreshing) return refreshing;
  const token = sessionStorage.getItem(REFRESH_KEY);
  if (!token) {
    if (accessToken !== null) clear();
    return Promise.resolve(false);
  }
  refreshing = tokenRequest({ grant_type: "refresh_token", refresh_token: token })
    .then((tokens) => {
      store(tokens);
      return true;
    })
    .catch((error: unknown) => {
      // A network error keeps the session; a refused refresh token ends it.
      if (error instanceof ApiError) clear();
      return false;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** Revokes the refresh token (and with it the family) and forgets the session. */
export async function logout(): Promise<void> {
  const token = sessionStorage.getItem(REFRESH_KEY);
  const access = accessToken;
  clear();
  if (token && access) {
    await fetch("/api/auth/revoke", {
      method: "POST",
      headers: { Authorization: `Bearer ${access}`, "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token }),
    }).catch(() => undefined);
  }
}

/** Whether a stored refresh token could restore a session (after a reload). */
export function canResume(): boolean {
  return sessionStorage.getItem(REFRESH_KEY) !== null;
}

/** A valid access token, refreshing first if it is about to expire; null when signed out. */
export async function validAccessToken(): Promise<string | null> {
  if (accessToken && Date.now() < expiresAt - 5000) return accessToken;
  if (await refresh()) return accessToken;
  return null;
}

/** Ends the session after the server refused the access token (401 on an API call). */
export function expire(): void {
  clear();
}
