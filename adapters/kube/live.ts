// The live Kube layer: the kubeconfig or service account (kubeconfig.ts) settles the server, TLS material and
// credentials; requests go through Deno's fetch with a Deno.HttpClient (client certificates, custom CA) so that
// watch responses stream event by event.
import { Effect, Layer, Predicate, Schema, type Scope, Stream } from "effect";
import { apiVersionOf, Kube, type KubeError, type KubeService } from "../../core/ports/kube.ts";
import type { Answer, CollectionRef, KubeBackend, RawWatchEvent } from "./backend.ts";
import { makeKube } from "./client.ts";
import { isJsonObject, type JsonObject } from "./patch.ts";
import { errorFromStatus, type RequestTarget, timeoutError, transportError } from "./status.ts";
import { connectionSettings, type KubeConfigSource } from "./kubeconfig.ts";

export type { KubeConfigSource } from "./kubeconfig.ts";

export interface LiveKubeOptions {
  readonly config: KubeConfigSource;
  /** Timeout of each non-watch request. Default 30 s. */
  readonly requestTimeoutMs?: number;
  /** The server closes each watch after a random time in this range (seconds); we then resume. Default 300–600. */
  readonly watchTimeoutSeconds?: readonly [number, number];
  /** Page size of lists. Default 500. */
  readonly pageSize?: number;
  readonly userAgent?: string;
}

export class KubeConfigError extends Schema.TaggedError<KubeConfigError>()("KubeConfigError", {
  source: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `cannot configure the Kubernetes client from ${this.source}: ${this.detail}`;
  }
}

/** What every request needs: where to send it, over which client, with which headers. */
export interface Connection {
  readonly server: string;
  readonly client: Deno.HttpClient | undefined;
  readonly headers: () => Promise<Record<string, string>>;
  readonly close: () => void;
}

/** Builds the connection for a config source. Exported for tests. */
export const connect = (source: KubeConfigSource): Effect.Effect<Connection, KubeConfigError> =>
  Effect.tryPromise({
    try: async () => {
      const settings = await connectionSettings(source);
      const https = settings.server.startsWith("https:");
      // Deno.HttpClient cannot skip verification per client; plain http needs the flag set (client-node insists).
      if (settings.skipTLSVerify && https) throw new Error("insecure-skip-tls-verify is not supported for https");
      const { ca, cert, key } = settings;
      // HTTP/1.1 only: over HTTP/2, Deno's client takes ~45 ms to send a request body of a few KB to the
      // apiserver (measured: PUT of a 10 KB ConfigMap 48 ms over h2, 3.7 ms over h1.1), which would dominate
      // every IPAM write. Concurrency comes from the connection pool instead of h2 streams.
      const client = Deno.createHttpClient({
        ...(ca ? { caCerts: [ca] } : {}),
        ...(cert && key ? { cert, key } : {}),
        http1: true,
        http2: false,
      });
      return {
        server: settings.server.replace(/\/+$/, ""),
        client,
        headers: settings.headers,
        close: () => client?.close(),
      };
    },
    catch: (e) =>
      new KubeConfigError({
        source: source._tag === "Kubeconfig" ? source.path : source._tag,
        detail: e instanceof Error ? e.message : String(e),
      }),
  });

const target = (verb: string, ref: CollectionRef, name?: string): RequestTarget => ({
  verb,
  kind: ref.rt.kind,
  ...(ref.namespace ? { namespace: ref.namespace } : {}),
  ...(name ? { name } : {}),
});

function path(ref: CollectionRef, name?: string, subresource?: string): string {
  const base = ref.rt.group === "" ? `/api/${ref.rt.version}` : `/apis/${ref.rt.group}/${ref.rt.version}`;
  const ns = ref.rt.namespaced && ref.namespace ? `/namespaces/${encodeURIComponent(ref.namespace)}` : "";
  return `${base}${ns}/${ref.rt.plural}${name ? `/${encodeURIComponent(name)}` : ""}${
    subresource ? `/${subresource}` : ""
  }`;
}

const query = (q: Record<string, string | number | boolean | undefined>): string => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== "") p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
};

/** Asks the apiserver to answer a write with the object's metadata only; plain JSON from a server that cannot. */
const metadataOnly = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

const parseBody = (raw: string): unknown => {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
};

/** A watch over `conn`: the server's event lines as they come, the request ended after a random timeout in range. */
function watchStream(
  conn: Connection,
  o: { readonly userAgent: string; readonly minWatch: number; readonly maxWatch: number },
  ref: CollectionRef,
  q: Parameters<KubeBackend["watch"]>[1],
): Stream.Stream<RawWatchEvent, KubeError> {
  const t = target("watch", ref);
  return Stream.unwrap(Effect.gen(function* () {
    const abort = yield* Effect.acquireRelease(
      Effect.sync(() => new AbortController()),
      (c) => Effect.sync(() => c.abort()),
    );
    const url = path(ref) + query({
      watch: 1,
      resourceVersion: q.resourceVersion,
      allowWatchBookmarks: q.bookmarks ? true : undefined,
      labelSelector: q.labelSelector,
      fieldSelector: q.fieldSelector,
      timeoutSeconds: o.minWatch + Math.floor(Math.random() * (o.maxWatch - o.minWatch + 1)),
    });
    const res = yield* Effect.tryPromise({
      try: async () =>
        fetch(`${conn.server}${url}`, {
          headers: { ...(await conn.headers()), Accept: "application/json", "User-Agent": o.userAgent },
          ...(conn.client ? { client: conn.client } : {}),
          signal: abort.signal,
        }),
      catch: (e) => transportError(t, e),
    });
    if (!res.ok || res.body === null) {
      const body = yield* Effect.promise(() => res.text().catch(() => ""));
      return yield* Effect.fail(errorFromStatus(t, res.status, parseBody(body)));
    }
    const stream = res.body;
    return Stream.fromReadableStream({ evaluate: () => stream, onError: (e) => transportError(t, e) }).pipe(
      Stream.decodeText,
      Stream.splitLines,
      Stream.filter((line) => line.trim() !== ""),
      Stream.mapEffect((line) => parseWatchLine(t, line)),
    );
  }));
}

/** The HTTP backend over a connection. Exported for tests (fake servers). */
export function httpBackend(conn: Connection, options: Omit<LiveKubeOptions, "config"> = {}): KubeBackend {
  const timeoutMs = options.requestTimeoutMs ?? 30_000;
  const [minWatch, maxWatch] = options.watchTimeoutSeconds ?? [300, 600];
  const userAgent = options.userAgent ?? "danm";

  const send = (
    t: RequestTarget,
    method: string,
    url: string,
    body?: { readonly contentType: string; readonly value: unknown },
    answer: Answer = "object",
  ): Effect.Effect<JsonObject, KubeError> =>
    Effect.tryPromise({
      try: async (signal) => {
        const headers = {
          ...(await conn.headers()),
          Accept: answer === "metadata" ? metadataOnly : "application/json",
          "User-Agent": userAgent,
          ...(body ? { "Content-Type": body.contentType } : {}),
        };
        const res = await fetch(`${conn.server}${url}`, {
          method,
          headers,
          ...(conn.client ? { client: conn.client } : {}),
          ...(body ? { body: JSON.stringify(body.value) } : {}),
          signal,
        });
        return { status: res.status, ok: res.ok, body: parseBody(await res.text()) };
      },
      catch: (e): KubeError => transportError(t, e),
    }).pipe(
      // Effect's timer is cleared when the answer comes; an AbortSignal.timeout per request would keep a timer and
      // its signal alive for the whole timeout (30 s): thousands of them on a busy node, all promoted by the GC.
      Effect.timeoutOrElse({
        duration: `${timeoutMs} millis`,
        orElse: () => Effect.fail(timeoutError(t, timeoutMs)),
      }),
      Effect.flatMap((r): Effect.Effect<JsonObject, KubeError> => {
        if (!r.ok) return Effect.fail(errorFromStatus(t, r.status, r.body));
        if (!isJsonObject(r.body)) return Effect.fail(transportError(t, `unexpected response body: ${String(r.body)}`));
        return Effect.succeed(r.body);
      }),
    );

  const writeQuery = (p: { dryRun?: boolean; fieldManager?: string }, force?: boolean) =>
    query({ dryRun: p.dryRun ? "All" : undefined, fieldManager: p.fieldManager, force: force ? true : undefined });

  const watch: KubeBackend["watch"] = (ref, q) => watchStream(conn, { userAgent, minWatch, maxWatch }, ref, q);

  return {
    get: (ref) => send(target("get", ref, ref.name), "GET", path(ref, ref.name)),
    list: (ref, q) =>
      send(
        target("list", ref),
        "GET",
        path(ref) + query({
          labelSelector: q.labelSelector,
          fieldSelector: q.fieldSelector,
          limit: q.limit,
          continue: q.continue,
        }),
      ).pipe(Effect.map((body) => {
        const meta = isJsonObject(body.metadata) ? body.metadata : {};
        const items = Array.isArray(body.items) ? body.items.filter(isJsonObject) : [];
        const cont = Predicate.isString(meta.continue) && meta.continue !== "" ? meta.continue : undefined;
        return {
          // Lists leave apiVersion/kind off their items.
          items: items.map((i) => ({ ...i, apiVersion: apiVersionOf(ref.rt), kind: ref.rt.kind })),
          resourceVersion: Predicate.isString(meta.resourceVersion) ? meta.resourceVersion : "",
          ...(cont ? { continue: cont } : {}),
        };
      })),
    create: (ref, body, p) =>
      send(target("create", ref, nameOf(body)), "POST", path(ref) + writeQuery(p), {
        contentType: "application/json",
        value: body,
      }, p.answer),
    replace: (ref, body, p) =>
      send(
        target(p.subresource === "status" ? "updateStatus" : "update", ref, ref.name),
        "PUT",
        path(ref, ref.name, p.subresource) + writeQuery(p),
        { contentType: "application/json", value: body },
        p.answer,
      ),
    patch: (ref, patch, p) => {
      const t = target("patch", ref, ref.name);
      const base = path(ref, ref.name, p.subresource);
      switch (patch.type) {
        case "merge":
          return send(t, "PATCH", base + writeQuery(p), {
            contentType: "application/merge-patch+json",
            value: patch.patch,
          });
        case "json":
          return send(t, "PATCH", base + writeQuery(p), {
            contentType: "application/json-patch+json",
            value: patch.ops,
          });
        case "apply":
          return send(t, "PATCH", base + writeQuery(p, patch.force), {
            contentType: "application/apply-patch+yaml", // JSON is YAML
            value: patch.object,
          });
      }
    },
    delete: (ref, o) => {
      const body = {
        apiVersion: "v1",
        kind: "DeleteOptions",
        ...(o.preconditions ? { preconditions: o.preconditions } : {}),
        ...(o.propagationPolicy ? { propagationPolicy: o.propagationPolicy } : {}),
        ...(o.gracePeriodSeconds !== undefined ? { gracePeriodSeconds: o.gracePeriodSeconds } : {}),
        ...(o.dryRun ? { dryRun: ["All"] } : {}),
      };
      return send(target("delete", ref, ref.name), "DELETE", path(ref, ref.name), {
        contentType: "application/json",
        value: body,
      });
    },
    watch,
  };
}

const nameOf = (body: JsonObject): string | undefined =>
  isJsonObject(body.metadata) && Predicate.isString(body.metadata.name) ? body.metadata.name : undefined;

const watchTypes = new Set(["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]);

/** One line of a watch response: an event, or an ERROR carrying a Status (410 Gone among them). */
export function parseWatchLine(t: RequestTarget, line: string): Effect.Effect<RawWatchEvent, KubeError> {
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch {
    return Effect.fail(transportError(t, `garbled watch event: ${line.slice(0, 200)}`));
  }
  if (!isJsonObject(ev) || !isJsonObject(ev.object) || !Predicate.isString(ev.type)) {
    return Effect.fail(transportError(t, `garbled watch event: ${line.slice(0, 200)}`));
  }
  if (ev.type === "ERROR") {
    const code = Predicate.isNumber(ev.object.code) ? ev.object.code : 500;
    return Effect.fail(errorFromStatus(t, code, ev.object));
  }
  if (!watchTypes.has(ev.type)) return Effect.fail(transportError(t, `unknown watch event type ${ev.type}`));
  return Effect.succeed({ type: ev.type as RawWatchEvent["type"], object: ev.object });
}

/** The Kube port against a real apiserver. Scoped: closes its HTTP client and stops its informers. */
export const makeLiveKube = (options: LiveKubeOptions): Effect.Effect<KubeService, KubeConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const conn = yield* Effect.acquireRelease(connect(options.config), (c) => Effect.sync(() => c.close()));
    return yield* makeKube(httpBackend(conn, options), options.pageSize ? { pageSize: options.pageSize } : {});
  });

export const layerLiveKube = (options: LiveKubeOptions): Layer.Layer<Kube, KubeConfigError> =>
  Layer.effect(Kube, makeLiveKube(options));
