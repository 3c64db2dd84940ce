/** Test helpers: a fetch stub that answers by method and path, and records what was sent. */
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { MemoryRouter } from "react-router-dom";
import { vi } from "vitest";

export interface SentRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}

type Handler = (request: SentRequest) => Response | Promise<Response>;

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** Installs the stub as the global fetch; ``routes`` maps "METHOD /path" to a handler. */
export function fakeApi(routes: Record<string, Handler>): SentRequest[] {
  const sent: SentRequest[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (input: Request) => {
      const url = new URL(input.url);
      const text = input.method === "GET" ? "" : await input.clone().text();
      const request = { method: input.method, path: url.pathname, query: url.searchParams, body: text ? JSON.parse(text) : undefined };
      sent.push(request);
      const handler = routes[`${input.method} ${url.pathname}`];
      return handler ? handler(request) : json({ code: "not_found", message: `no fake for ${input.method} ${url.pathname}` }, 404);
    }),
  );
  return sent;
}

/** A render wrapper: a fresh query client without retries, a router at ``path``. */
export function providers(path = "/") {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } });
  return function Providers({ children }: { children: ReactNode }) {
    return (
      <QueryClientProvider client={client}>
        <MemoryRouter initialEntries={[path]}>{children}</MemoryRouter>
      </QueryClientProvider>
    );
  };
}
