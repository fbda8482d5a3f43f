// The live HTTP layer over Deno.serve, chosen for its speed: node:https (which could swap certificates in place)
// measured several times slower per request under the apiserver's 50-way concurrency (bench:webhook).
//
// Certificate reload: Deno cannot swap a listener's certificate, and a second TLS listener on the same port needs
// the unstable SO_REUSEPORT for TLS. So a new pair is first checked (a throwaway TLS listener must accept it), then
// the old server is shut down gracefully (requests in flight finish; HTTP/2 clients get a GOAWAY and reconnect)
// and the new one binds the port at once: the port refuses connections for a few milliseconds per reload.
import { Cause, Effect, Layer, Semaphore } from "effect";
import {
  Http,
  type HttpHandler,
  HttpListenError,
  type HttpServer,
  type HttpService,
  HttpTlsError,
  type ServeOptions,
  showAddress,
  type TlsPair,
} from "../../core/ports/http.ts";

const detail = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Throws when the pair cannot serve TLS (bad PEM, unsupported key, key not matching the certificate). */
function checkPair(pair: TlsPair): void {
  Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: pair.cert, key: pair.key }).close();
}

const internalError = (cause: Cause.Cause<unknown>) =>
  new Response(`internal error: ${Cause.pretty(cause)}\n`, {
    status: 500,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });

const serve = <R>(options: ServeOptions, handler: HttpHandler<R>) =>
  Effect.gen(function* () {
    const run = Effect.runPromiseWith(yield* Effect.context<R>());
    const respond = (req: Request) => run(Effect.catchCause(handler(req), (c) => Effect.succeed(internalError(c))));
    const wanted = showAddress(options.hostname, options.port);
    let port = options.port;
    const open = (pair: TlsPair | undefined) =>
      Deno.serve({ hostname: options.hostname, port, ...(pair ?? {}), onListen: () => {} }, respond);

    if (options.tls) {
      const pair = options.tls;
      yield* Effect.try({
        try: () => checkPair(pair),
        catch: (e) =>
          new HttpTlsError({ operation: "load the serving certificate", address: wanted, detail: detail(e) }),
      });
    }
    const first = yield* Effect.try({
      try: () => open(options.tls),
      catch: (e) => new HttpListenError({ address: wanted, detail: detail(e) }),
    });
    port = first.addr.port;
    const address = { hostname: first.addr.hostname, port };
    const where = showAddress(address.hostname, port);

    // `current` is undefined once closed, and while a reload has let go of the port and not bound it again.
    let current: Deno.HttpServer | undefined = first;
    let closed = false;
    const draining = new Set<Promise<void>>();
    const drain = (server: Deno.HttpServer) => {
      const done = server.shutdown();
      draining.add(done);
      const forget = () => void draining.delete(done);
      done.then(forget, forget);
    };
    const lock = Semaphore.makeUnsafe(1);

    const tlsError = (d: string) =>
      new HttpTlsError({ operation: "reload the serving certificate", address: where, detail: d });

    /** Binds the port again as soon as the old listener let go of it; gives up when the server is closed. */
    const rebind = (pair: TlsPair) =>
      Effect.gen(function* () {
        for (let attempt = 0; !closed; attempt++) {
          try {
            current = open(pair); // assigned in the same step: an interruption cannot lose a bound listener
            return;
          } catch (e) {
            if (attempt % 1000 === 999) yield* Effect.logError(`cannot listen on ${where} again: ${detail(e)}`);
          }
          yield* Effect.sleep(attempt < 100 ? 0 : 10);
        }
      });

    // Interrupted between letting go of the port and binding it again, the server stays without a listener: only
    // the end of its scope interrupts a reload in practice, and closes it anyway.
    const reload = (pair: TlsPair) =>
      Semaphore.withPermit(
        lock,
        Effect.gen(function* () {
          if (!options.tls) return yield* tlsError("the server serves plain HTTP");
          if (closed || current === undefined) return yield* tlsError("the server is closed");
          yield* Effect.try({ try: () => checkPair(pair), catch: (e) => tlsError(detail(e)) });
          drain(current);
          current = undefined;
          yield* rebind(pair);
        }),
      );

    const close = Effect.suspend(() => {
      closed = true;
      if (current !== undefined) drain(current);
      current = undefined;
      return Effect.promise(() => Promise.all([...draining]));
    }).pipe(Effect.asVoid);

    yield* Effect.addFinalizer(() => close);
    return { address, tls: options.tls !== undefined, reload, close } satisfies HttpServer;
  });

export const makeLiveHttp = (): HttpService => ({ serve });

export const layerLiveHttp: Layer.Layer<Http> = Layer.succeed(Http, makeLiveHttp());
