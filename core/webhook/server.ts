// The webhook's HTTPS server: POST /mutate and /validate (AdmissionReview v1), GET /healthz, /readyz and /metrics,
// served through the Http port (adapters/http/live.ts tells how a certificate is swapped under a running server).
//
// Certificate reload: the certificate and key files are polled through the Fs port (Secret volumes swap a symlink,
// which a watch on the file misses) and a changed pair goes to the server's reload. A pair that does not load is
// reported and the old one keeps serving.
import { Cause, Effect, Schema, type Scope } from "effect";
import { ExpositionContentType } from "../observability/metrics.ts";
import { Fs } from "../ports/filesystem.ts";
import { Http, type TlsPair } from "../ports/http.ts";
import type { Kube } from "../ports/kube.ts";
import { type Admission, isReviewDecodeError } from "./admit.ts";
import type { WebhookMetrics } from "./metrics.ts";
import type { ReviewResponse } from "./review.ts";

export interface ServerOptions {
  readonly hostname: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
  /** How often the certificate files are checked for changes. */
  readonly reloadIntervalMs: number;
  /** Largest request body accepted (the apiserver caps objects at 3 MiB). Default 6 MiB. */
  readonly maxBodyBytes?: number;
}

export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", {
  operation: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `webhook server: ${this.operation}: ${this.detail}`;
  }
}

export interface RunningServer {
  readonly port: number;
  /** Counts the certificates loaded (1 + reloads). */
  readonly generation: () => number;
}

interface Reply {
  readonly status: number;
  readonly body: string;
  readonly type: string;
}

const text = (status: number, body: string): Reply => ({ status, body, type: "text/plain; charset=utf-8" });
const internalError = (cause: Cause.Cause<unknown>) => text(500, `internal error: ${Cause.pretty(cause)}\n`);

export const serveWebhook = (
  admission: Admission,
  ready: Effect.Effect<boolean>,
  metrics: WebhookMetrics,
  options: ServerOptions,
): Effect.Effect<RunningServer, ServerError, Kube | Fs | Http | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    const http = yield* Http;
    const maxBody = options.maxBodyBytes ?? 6 * 1024 * 1024;
    metrics.ready.set(0);
    const readyNow = Effect.tap(ready, (r) => Effect.sync(() => metrics.ready.set(r ? 1 : 0)));

    const review = (req: Request, run: (body: unknown) => Effect.Effect<ReviewResponse, unknown, Kube>) =>
      Effect.gen(function* () {
        if (req.method !== "POST") return text(405, "POST an AdmissionReview\n");
        if (Number(req.headers.get("content-length") ?? "0") > maxBody) return text(413, "request body too large\n");
        const raw = yield* Effect.promise(() => req.text());
        if (raw.length > maxBody) return text(413, "request body too large\n");
        let body: unknown;
        try {
          body = JSON.parse(raw);
        } catch (e) {
          return text(400, `request body is not JSON: ${e}\n`);
        }
        return yield* run(body).pipe(
          Effect.map((r): Reply => ({ status: 200, body: JSON.stringify(r), type: "application/json" })),
          Effect.catchCause((cause) => {
            const err = Cause.findErrorOption(cause);
            return Effect.succeed(
              err._tag === "Some" && isReviewDecodeError(err.value)
                ? text(400, `${err.value.message}\n`)
                : internalError(cause),
            );
          }),
        );
      });

    const route = (req: Request, path: string): Effect.Effect<Reply, never, Kube> => {
      switch (path) {
        case "/mutate":
          return review(req, admission.mutate);
        case "/validate":
          return review(req, admission.validate);
        case "/healthz":
          return Effect.succeed(text(200, "ok\n"));
        case "/readyz":
          return Effect.map(readyNow, (r) => (r ? text(200, "ok\n") : text(503, "caches not synced\n")));
        case "/metrics":
          return Effect.map(readyNow, () => ({
            status: 200,
            body: metrics.render(),
            type: ExpositionContentType,
          }));
        default:
          return Effect.succeed(text(404, "not found\n"));
      }
    };

    const handler = (req: Request) =>
      Effect.gen(function* () {
        const started = performance.now();
        const path = new URL(req.url).pathname; // the apiserver adds ?timeout=…
        const r = yield* route(req, path).pipe(Effect.catchCause((cause) => Effect.succeed(internalError(cause))));
        if (path === "/mutate" || path === "/validate") metrics.observeHttp(path, (performance.now() - started) / 1000);
        return new Response(r.body, { status: r.status, headers: { "content-type": r.type } });
      });

    const readPair = Effect.map(
      Effect.all([fs.readText(options.certFile), fs.readText(options.keyFile)]),
      ([cert, key]): TlsPair => ({ cert, key }),
    );
    let pair = yield* readPair.pipe(
      Effect.mapError((e) => new ServerError({ operation: "reading the certificate files", detail: e.message })),
    );
    const server = yield* http.serve({ hostname: options.hostname, port: options.port, tls: pair }, handler).pipe(
      Effect.mapError((e) =>
        new ServerError({
          operation: e._tag === "HttpTlsError"
            ? `loading ${options.certFile} and ${options.keyFile}`
            : `listening on ${options.hostname}:${options.port}`,
          detail: e.detail,
        })
      ),
    );
    metrics.certReloads.inc();
    let generation = 1;

    // Certificate reload loop. A pair that cannot be read (mid-rotation) is tried again on the next tick.
    yield* Effect.gen(function* () {
      yield* Effect.sleep(options.reloadIntervalMs);
      const read = yield* Effect.result(readPair);
      if (read._tag === "Failure") return;
      const next = read.success;
      if (next.cert === pair.cert && next.key === pair.key) return;
      pair = next; // a broken pair is reported once, not on every tick
      const reloaded = yield* Effect.result(server.reload(next));
      if (reloaded._tag === "Failure") {
        yield* Effect.logError(`keeping the old serving certificate: ${options.certFile}: ${reloaded.failure.detail}`);
        return;
      }
      generation++;
      metrics.certReloads.inc();
      yield* Effect.logInfo(`serving certificate reloaded from ${options.certFile}`);
    }).pipe(Effect.forever, Effect.forkScoped);

    return { port: server.address.port, generation: () => generation } satisfies RunningServer;
  });
