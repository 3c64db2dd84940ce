/** An API error as the user sees it: its code and message, never a blank screen. */
import { ApiError } from "../api/errors";

export function describeError(error: unknown): { code: string; message: string } {
  if (error instanceof ApiError) return { code: error.code, message: error.message };
  if (error instanceof Error) return { code: "client_error", message: error.message };
  return { code: "client_error", message: String(error) };
}

export function ErrorMessage({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const { code, message } = describeError(error);
  return (
    <div role="alert" className="rounded border border-danger/60 bg-danger/10 px-3 py-2 text-sm text-fg">
      {title && <div className="font-medium">{title}</div>}
      <span className="font-mono text-danger">{code}</span>: {message}
    </div>
  );
}
