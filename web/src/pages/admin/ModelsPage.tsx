/** The networks Triton serves, as their configs describe them: version, training run,
 * readiness and whether they were trained on synthetic data. When Triton cannot be reached
 * the API answers 503 and the page says so. */
import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";
import type { ServedModel } from "../../api/types";
import { ErrorMessage } from "../../components/ErrorMessage";

export function ModelsPage() {
  const models = useQuery({
    queryKey: ["models"],
    queryFn: async () => unwrap(await api.GET("/api/models")),
    retry: false,
  });
  const items = models.data ?? [];

  return (
    <div className="space-y-3 p-4">
      <div className="flex items-baseline gap-3">
        <h1 className="text-lg font-semibold">Served models</h1>
        <span className="text-sm text-muted" aria-live="polite">
          {models.isFetching ? "asking Triton…" : models.isSuccess ? `${items.length} models` : ""}
        </span>
        <button type="button" className="btn ml-auto" onClick={() => void models.refetch()} disabled={models.isFetching}>
          Refresh
        </button>
      </div>

      <ErrorMessage error={models.error} title="The served models could not be read from Triton" />

      {models.isSuccess && (
        <div className="panel overflow-x-auto">
          <table className="w-full text-left text-sm">
            <caption className="sr-only">Served models</caption>
            <thead className="border-b border-line text-muted">
              <tr>
                <th scope="col" className="px-3 py-2 font-normal">Model</th>
                <th scope="col" className="px-3 py-2 font-normal">Version</th>
                <th scope="col" className="px-3 py-2 font-normal">State</th>
                <th scope="col" className="px-3 py-2 font-normal">Training data</th>
                <th scope="col" className="px-3 py-2 font-normal">Training run</th>
                <th scope="col" className="px-3 py-2 font-normal">Parameters</th>
              </tr>
            </thead>
            <tbody>
              {items.map((model) => (
                <ModelRow key={model.name} model={model} />
              ))}
              {items.length === 0 && (
                <tr>
                  <td colSpan={6} className="px-3 py-6 text-center text-muted">
                    Triton serves none of the known networks.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function ModelRow({ model }: { model: ServedModel }) {
  // Lists (labels, thresholds) are comma-separated without spaces: a zero-width space after
  // each comma lets them wrap there instead of overflowing the cell.
  const parameters = Object.entries(model.parameters).sort(([a], [b]) => a.localeCompare(b));
  return (
    <tr className="border-b border-line/60 align-top hover:bg-raised" data-model={model.name}>
      <td className="px-3 py-2 font-mono">{model.name}</td>
      <td className="px-3 py-2 font-mono">{model.model_version ?? <span className="text-muted">—</span>}</td>
      <td className="px-3 py-2">{model.ready ? <span className="text-ok">ready</span> : <span className="font-semibold text-danger">not ready</span>}</td>
      <td className="px-3 py-2">
        {model.synthetic ? (
          <div className="space-y-1">
            <span className="inline-block rounded bg-danger px-1.5 py-0.5 text-xs font-bold tracking-wide text-bg">SYNTHETIC</span>
            {model.warning && <p className="max-w-xs text-xs text-danger">{model.warning}</p>}
          </div>
        ) : model.ready ? (
          <span className="text-muted">not synthetic</span>
        ) : (
          <span className="text-muted">unknown</span>
        )}
      </td>
      <td className="px-3 py-2 font-mono text-xs">{model.training_run_id ?? <span className="text-muted">—</span>}</td>
      <td className="px-3 py-2">
        {parameters.length === 0 ? (
          <span className="text-muted">—</span>
        ) : (
          <details>
            <summary className="cursor-pointer text-muted">
              {parameters.length} parameters<span className="sr-only"> of {model.name}</span>
            </summary>
            <dl className="mt-1 grid max-w-xl grid-cols-[max-content_1fr] gap-x-3 gap-y-0.5 text-xs">
              {parameters.map(([key, value]) => (
                <div key={key} className="contents">
                  <dt className="font-mono text-muted">{key}</dt>
                  <dd className="font-mono break-words">{value.replaceAll(",", ",\u200b")}</dd>
                </div>
              ))}
            </dl>
          </details>
        )}
      </td>
    </tr>
  );
}
