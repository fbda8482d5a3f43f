// The webhook's HTTPS server: POST /mutate and /validate (AdmissionReview v1), GET /healthz, /readyz and /metrics.
//
// Deno.serve, for its speed: node:https (which could swap certificates in place) measured several times slower per
// request under the apiserver's 50-way concurrency.
//
// Certificate reload: the certificate and key files are polled (Secret volumes swap a symlink, which a watch on
// the file misses). Deno cannot swap a listener's certificate, and a second TLS listener on the same port needs
// the unstable SO_REUSEPORT for TLS, so a changed pair is first checked (a throwaway TLS listener must accept it),
// then the old server is shut down gracefully (requests in flight finish; HTTP/2 clients get a GOAWAY and
// reconnect) and the new one binds the port at once: the port is closed for a few milliseconds per rotation.
// A pair that does not load is reported and the old one keeps serving.
import { Cause, type Context, Effect, Schema, type Scope } from "effect";
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

interface Pair {
  readonly cert: string;
  readonly key: string;
}

const readPair = (o: ServerOptions): Promise<Pair> =>
  Promise.all([Deno.readTextFile(o.certFile), Deno.readTextFile(o.keyFile)]).then(([cert, key]) => ({ cert, key }));

interface Reply {
  readonly status: number;
  readonly body: string;
  readonly type: string;
}

const text = (status: number, body: string): Reply => ({ status, body, type: "text/plain; charset=utf-8" });

/** Throws when the pair cannot serve TLS (bad PEM, unsupported key). */
function checkPair(pair: Pair): void {
  const probe = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: pair.cert, key: pair.key });
  probe.close();
}

export const serveWebhook = (
  admission: Admission,
  ready: Effect.Effect<boolean>,
  metrics: WebhookMetrics,
  options: ServerOptions,
): Effect.Effect<RunningServer, ServerError, Kube | Scope.Scope> =>
  Effect.gen(function* () {
    const context: Context.Context<Kube> = yield* Effect.context<Kube>();
    const runPromise = Effect.runPromiseWith(context);
    const maxBody = options.maxBodyBytes ?? 6 * 1024 * 1024;
    let readyNow = false;
    metrics.ready.track(() => (readyNow ? 1 : 0));

    const review = async (
      req: Request,
      run: (body: unknown) => Effect.Effect<ReviewResponse, unknown, Kube>,
    ): Promise<Reply> => {
      if (req.method !== "POST") return text(405, "POST an AdmissionReview\n");
      if (Number(req.headers.get("content-length") ?? "0") > maxBody) return text(413, "request body too large\n");
      const raw = await req.text();
      if (raw.length > maxBody) return text(413, "request body too large\n");
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch (e) {
        return text(400, `request body is not JSON: ${e}\n`);
      }
      const exit = await runPromise(Effect.exit(run(body)));
      if (exit._tag === "Success") return { status: 200, body: JSON.stringify(exit.value), type: "application/json" };
      const err = Cause.findErrorOption(exit.cause);
      if (err._tag === "Some" && isReviewDecodeError(err.value)) return text(400, `${err.value.message}\n`);
      return text(500, `internal error: ${Cause.pretty(exit.cause)}\n`);
    };

    const route = async (req: Request, path: string): Promise<Reply> => {
      switch (path) {
        case "/mutate":
          return await review(req, admission.mutate);
        case "/validate":
          return await review(req, admission.validate);
        case "/healthz":
          return text(200, "ok\n");
        case "/readyz":
          readyNow = await runPromise(ready);
          return readyNow ? text(200, "ok\n") : text(503, "caches not synced\n");
        case "/metrics":
          readyNow = await runPromise(ready);
          return { status: 200, body: metrics.render(), type: "text/plain; version=0.0.4" };
        default:
          return text(404, "not found\n");
      }
    };

    const handler = async (req: Request): Promise<Response> => {
      const started = performance.now();
      const path = new URL(req.url).pathname; // the apiserver adds ?timeout=…
      let r: Reply;
      try {
        r = await route(req, path);
      } catch (e) {
        r = text(500, `internal error: ${e}\n`);
      }
      if (path === "/mutate" || path === "/validate") metrics.observeHttp(path, (performance.now() - started) / 1000);
      return new Response(r.body, { status: r.status, headers: { "content-type": r.type } });
    };

    let port = options.port;
    const open = (pair: Pair) =>
      Deno.serve({ hostname: options.hostname, port, cert: pair.cert, key: pair.key, onListen: () => {} }, handler);

    let pair = yield* Effect.tryPromise({
      try: () => readPair(options),
      catch: (e) => new ServerError({ operation: "reading the certificate files", detail: String(e) }),
    });
    yield* Effect.try({
      try: () => checkPair(pair),
      catch: (e) =>
        new ServerError({ operation: `loading ${options.certFile} and ${options.keyFile}`, detail: String(e) }),
    });
    let current = yield* Effect.try({
      try: () => open(pair),
      catch: (e) =>
        new ServerError({ operation: `listening on ${options.hostname}:${options.port}`, detail: String(e) }),
    });
    port = current.addr.port;
    metrics.certReloads.inc();
    let generation = 1;
    yield* Effect.addFinalizer(() => Effect.promise(() => current.shutdown()));

    /** Binds the port again as soon as the old listener let go of it. */
    const rebind = (next: Pair) =>
      Effect.gen(function* () {
        for (let attempt = 0;; attempt++) {
          const opened = yield* Effect.result(Effect.try({ try: () => open(next), catch: (e) => String(e) }));
          if (opened._tag === "Success") return opened.success;
          if (attempt % 1000 === 999) yield* Effect.logError(`cannot listen on port ${port} again: ${opened.failure}`);
          yield* Effect.sleep(attempt < 100 ? 0 : 10);
        }
      });

    // Certificate reload loop.
    yield* Effect.gen(function* () {
      yield* Effect.sleep(options.reloadIntervalMs);
      const next = yield* Effect.promise(() => readPair(options).catch(() => undefined));
      if (next === undefined || (next.cert === pair.cert && next.key === pair.key)) return;
      pair = next; // a broken pair is reported once, not on every tick
      const checked = yield* Effect.result(Effect.try({ try: () => checkPair(next), catch: (e) => String(e) }));
      if (checked._tag === "Failure") {
        yield* Effect.logError(`keeping the old serving certificate: ${options.certFile}: ${checked.failure}`);
        return;
      }
      const old = current;
      const drained = old.shutdown();
      current = yield* rebind(next);
      generation++;
      metrics.certReloads.inc();
      yield* Effect.logInfo(`serving certificate reloaded from ${options.certFile}`);
      yield* Effect.promise(() => drained);
    }).pipe(Effect.forever, Effect.forkScoped);

    return { port, generation: () => generation } satisfies RunningServer;
  });
