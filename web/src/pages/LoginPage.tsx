/** Sign-in with username and password (OAuth2 password grant). */
import { useState, type FormEvent } from "react";
import { useAuth } from "../auth/AuthProvider";
import { ApiError } from "../api/errors";
import { ErrorMessage } from "../components/ErrorMessage";

function loginProblem(error: unknown): unknown {
  if (error instanceof ApiError && error.status === 429)
    return new ApiError(429, error.code, "Too many failed sign-ins. Wait a few minutes and try again.");
  if (error instanceof ApiError && (error.status === 401 || error.status === 400))
    return new ApiError(error.status, error.code, "Wrong username or password.");
  return error;
}

export function LoginPage() {
  const { login } = useAuth();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
    } catch (e) {
      setError(loginProblem(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="flex h-full items-center justify-center">
      <form onSubmit={submit} className="panel w-80 space-y-4 p-6" aria-labelledby="login-title">
        <h1 id="login-title" className="text-lg font-semibold">
          MedVision sign in
        </h1>
        <label className="block text-sm">
          <span className="mb-1 block text-muted">Username</span>
          <input className="input w-full" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required />
        </label>
        <label className="block text-sm">
          <span className="mb-1 block text-muted">Password</span>
          <input
            className="input w-full"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        <ErrorMessage error={error} />
        <button type="submit" className="btn-primary w-full justify-center" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
