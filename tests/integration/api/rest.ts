// Raw JSON requests to the test apiserver. client-node's typed clients re-serialize bodies through their models,
// which drops keys they spell differently (`enum`, `x-kubernetes-list-type` …) from CRD schemas; these tests need
// the bytes they send to reach the apiserver unchanged.
import type * as k8s from "@kubernetes/client-node";

export interface RestResponse {
  readonly status: number;
  /** Parsed JSON, or the text when the response is not JSON. */
  readonly body: unknown;
  /** The texts of the `Warning: 299 - "…"` headers (admission webhooks' warnings, deprecations). */
  readonly warnings: ReadonlyArray<string>;
}

/** RFC 7234 warn-texts of a `Warning` header value (comma-joined when repeated). */
function warningsOf(header: string | null): string[] {
  const out: string[] = [];
  for (const m of (header ?? "").matchAll(/\d{3} \S+ "((?:[^"\\]|\\.)*)"/g)) out.push(m[1].replace(/\\(.)/g, "$1"));
  return out;
}

/** The value at a path of keys/indices inside parsed JSON (undefined where the path leaves it). */
export function pick(v: unknown, ...path: Array<string | number>): unknown {
  let cur = v;
  for (const k of path) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return cur;
}

export interface Rest {
  /** JSON bodies; PATCH as a merge patch unless `contentType` says otherwise (e.g. server-side apply). */
  call(
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<RestResponse>;
  close(): void;
}

export function restClient(kc: k8s.KubeConfig): Rest {
  const cluster = kc.getCurrentCluster(), user = kc.getCurrentUser();
  if (!cluster || !user) throw new Error("kubeconfig has no current cluster/user");
  const pem = (data?: string, file?: string) => data ? atob(data) : file ? Deno.readTextFileSync(file) : undefined;
  const ca = pem(cluster.caData, cluster.caFile), cert = pem(user.certData, user.certFile);
  const key = pem(user.keyData, user.keyFile);
  const client = Deno.createHttpClient({
    ...(ca ? { caCerts: [ca] } : {}),
    ...(cert && key ? { cert, key } : {}),
  });
  return {
    async call(method, path, body, contentType) {
      const headers: Record<string, string> = { accept: "application/json" };
      if (user.token) headers.authorization = `Bearer ${user.token}`;
      if (body !== undefined) {
        headers["content-type"] = contentType ??
          (method === "PATCH" ? "application/merge-patch+json" : "application/json");
      }
      const res = await fetch(`${cluster.server}${path}`, {
        method,
        headers,
        client,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch { /* not JSON: keep the text */ }
      return { status: res.status, body: parsed, warnings: warningsOf(res.headers.get("warning")) };
    },
    close: () => client.close(),
  };
}
