// The in-memory HTTP twin: servers bind addresses of a MemoryHttpNetwork instead of sockets, and tests or the
// simulation send requests to an address with `request`/`fetch`. It keeps what callers can observe of the live
// layer: ports (0 picks a free one, a taken one fails), https vs http, which CA a client must trust (adapters/http/
// pem.ts), reload, 500 for a failing handler, close refusing new requests while those in flight finish.
import { Cause, Effect, Layer, Schema } from "effect";
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
import { type Certificate, checkPair, issuedBy, parseCertificate, pemBlocks } from "./pem.ts";

/** A request that got no response: nothing listens, the scheme does not match, or the certificate is not trusted. */
export class MemoryHttpRequestError extends Schema.TaggedError<MemoryHttpRequestError>()("MemoryHttpRequestError", {
  url: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `request ${this.url}: ${this.reason}`;
  }
}

export interface MemoryRequestInit extends RequestInit {
  /** CA certificates (PEM) trusted for https. */
  readonly caCerts?: ReadonlyArray<string>;
}

interface Bound {
  readonly hostname: string;
  readonly port: number;
  leaf: Certificate | undefined;
  closed: boolean;
  readonly inflight: Set<Promise<Response>>;
  readonly respond: (req: Request) => Promise<Response>;
}

const wildcard = (h: string) => h === "0.0.0.0" || h === "::" || h === "";
const canonical = (h: string) => {
  const bare = h.startsWith("[") ? h.slice(1, -1) : h;
  return bare === "localhost" ? "127.0.0.1" : bare;
};
const overlaps = (a: string, b: string) => wildcard(a) || wildcard(b) || canonical(a) === canonical(b);
const detail = (e: unknown) => (e instanceof Error ? e.message : String(e));

const internalError = (cause: Cause.Cause<unknown>) =>
  new Response(`internal error: ${Cause.pretty(cause)}\n`, {
    status: 500,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });

export class MemoryHttpNetwork {
  private readonly servers: Bound[] = [];
  private nextPort = 40000;

  /** The addresses bound now. */
  bound(): ReadonlyArray<{ readonly hostname: string; readonly port: number; readonly tls: boolean }> {
    return this.servers.map((s) => ({ hostname: s.hostname, port: s.port, tls: s.leaf !== undefined }));
  }

  /** Sends `input` to the server bound at its URL's host and port, as a client trusting `init.caCerts`. */
  request(
    input: string | URL | Request,
    init: MemoryRequestInit = {},
  ): Effect.Effect<Response, MemoryHttpRequestError> {
    return Effect.gen({ self: this }, function* () {
      const { caCerts, ...rest } = init;
      const req = new Request(input, rest);
      const url = new URL(req.url);
      const refuse = (reason: string) => new MemoryHttpRequestError({ url: req.url, reason });
      const https = url.protocol === "https:";
      if (!https && url.protocol !== "http:") return yield* refuse(`unsupported scheme ${url.protocol}`);
      const port = Number(url.port || (https ? 443 : 80));
      const server = this.servers.find((s) => s.port === port && overlaps(s.hostname, url.hostname));
      if (server === undefined) return yield* refuse("connection refused");
      const leaf = server.leaf;
      if (https && leaf === undefined) return yield* refuse("TLS handshake failed: the server speaks plain HTTP");
      if (!https && leaf !== undefined) return yield* refuse("connection reset: the server expects TLS");
      if (leaf !== undefined) {
        const trusted = yield* Effect.promise(() => trusts(caCerts ?? [], leaf));
        if (!trusted) return yield* refuse("invalid peer certificate: issued by an unknown CA");
      }
      const pending = server.respond(req);
      server.inflight.add(pending);
      const forget = () => void server.inflight.delete(pending);
      pending.then(forget, forget);
      return yield* Effect.promise(() => pending);
    });
  }

  /** `request` for Promise-based callers; rejects with MemoryHttpRequestError. */
  fetch(input: string | URL | Request, init: MemoryRequestInit = {}): Promise<Response> {
    return Effect.runPromise(this.request(input, init));
  }

  private freePort(hostname: string): number {
    for (;;) {
      const p = this.nextPort++;
      if (this.nextPort > 60999) this.nextPort = 40000;
      if (!this.servers.some((s) => s.port === p && overlaps(s.hostname, hostname))) return p;
    }
  }

  private readonly serve = <R>(options: ServeOptions, handler: HttpHandler<R>) =>
    Effect.gen({ self: this }, function* () {
      const run = Effect.runPromiseWith(yield* Effect.context<R>());
      const wanted = showAddress(options.hostname, options.port);
      const tls = options.tls;
      const leaf = tls === undefined ? undefined : yield* Effect.tryPromise({
        try: () => checkPair(tls.cert, tls.key),
        catch: (e) =>
          new HttpTlsError({ operation: "load the serving certificate", address: wanted, detail: detail(e) }),
      });
      if (
        options.port !== 0 &&
        this.servers.some((s) => s.port === options.port && overlaps(s.hostname, options.hostname))
      ) {
        return yield* new HttpListenError({ address: wanted, detail: "Address already in use" });
      }
      const bound: Bound = {
        hostname: options.hostname,
        port: options.port === 0 ? this.freePort(options.hostname) : options.port,
        leaf,
        closed: false,
        inflight: new Set(),
        respond: (req) => run(Effect.catchCause(handler(req), (c) => Effect.succeed(internalError(c)))),
      };
      this.servers.push(bound);
      const where = showAddress(bound.hostname, bound.port);
      const tlsError = (d: string) =>
        new HttpTlsError({ operation: "reload the serving certificate", address: where, detail: d });

      const reload = (pair: TlsPair) =>
        Effect.gen(function* () {
          if (tls === undefined) return yield* tlsError("the server serves plain HTTP");
          if (bound.closed) return yield* tlsError("the server is closed");
          bound.leaf = yield* Effect.tryPromise({
            try: () => checkPair(pair.cert, pair.key),
            catch: (e) => tlsError(detail(e)),
          });
        });

      const close = Effect.suspend(() => {
        bound.closed = true;
        const i = this.servers.indexOf(bound);
        if (i >= 0) this.servers.splice(i, 1);
        return Effect.promise(() => Promise.allSettled([...bound.inflight]));
      }).pipe(Effect.asVoid);

      yield* Effect.addFinalizer(() => close);
      return {
        address: { hostname: bound.hostname, port: bound.port },
        tls: tls !== undefined,
        reload,
        close,
      } satisfies HttpServer;
    });

  readonly service: HttpService = { serve: this.serve };
}

async function trusts(caCerts: ReadonlyArray<string>, leaf: Certificate): Promise<boolean> {
  for (const pem of caCerts) {
    let cas: Certificate[];
    try {
      cas = pemBlocks(pem, /^CERTIFICATE$/).map(parseCertificate);
    } catch {
      continue; // a client ignores what it cannot parse
    }
    for (const ca of cas) if (await issuedBy(leaf, ca)) return true;
  }
  return false;
}

export const layerMemoryHttp = (network: MemoryHttpNetwork = new MemoryHttpNetwork()): Layer.Layer<Http> =>
  Layer.succeed(Http, network.service);
