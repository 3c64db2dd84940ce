import { Link } from "react-router-dom";

export function NotFoundPage() {
  return (
    <div className="p-6">
      <h1 className="text-lg font-semibold">Page not found</h1>
      <p className="mt-2 text-muted">
        Nothing here, or not for your role. <Link className="text-accent underline" to="/">Back to the worklist</Link>
      </p>
    </div>
  );
}
