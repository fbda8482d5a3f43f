// Serving HTTP(S) as the core sees it: the webhook's admission endpoints and the /metrics endpoints of the agents.
// Live layer: adapters/http/live.ts (Deno.serve); in-memory layer: adapters/http/memory.ts (no socket: requests are
// dispatched to the handler bound at an address).
//
// Requests and responses are the web-standard `Request` and `Response`; the handler is an Effect run with the
// services available where `serve` was called, one fiber per request.
import { Context, type Effect, Schema, type Scope } from "effect";

/** A PEM certificate chain (leaf first) and its PEM private key. */
export interface TlsPair {
  readonly cert: string;
  readonly key: string;
}

/**
 * Answers one request. A failure or defect of the Effect becomes a 500 (the server keeps serving); handlers that
 * want another status map their errors themselves.
 */
export type HttpHandler<R = never> = (request: Request) => Effect.Effect<Response, unknown, R>;

export interface ServeOptions {
  readonly hostname: string;
  /** 0 picks a free port; `HttpServer.address.port` tells which. */
  readonly port: number;
  /** Serve HTTPS with this pair; without it plain HTTP. */
  readonly tls?: TlsPair;
}

export interface HttpServer {
  /** The address actually bound. */
  readonly address: { readonly hostname: string; readonly port: number };
  readonly tls: boolean;
  /**
   * Serves `pair` to new connections from now on, on the same port. A pair that does not load fails with
   * HttpTlsError and the old one keeps serving; so does a plain-HTTP or closed server. Requests in flight finish.
   * The port may refuse connections for a few milliseconds while the listener is replaced (see the live layer).
   */
  readonly reload: (pair: TlsPair) => Effect.Effect<void, HttpTlsError>;
  /** Stops accepting connections and waits for the requests in flight. Idempotent; also run when the scope closes. */
  readonly close: Effect.Effect<void>;
}

export class HttpListenError extends Schema.TaggedError<HttpListenError>()("HttpListenError", {
  address: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `listen on ${this.address}: ${this.detail}`;
  }
}

/** A certificate or key that does not load, or a reload the server cannot take. */
export class HttpTlsError extends Schema.TaggedError<HttpTlsError>()("HttpTlsError", {
  operation: Schema.String,
  address: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.operation} for ${this.address}: ${this.detail}`;
  }
}

export type HttpError = HttpListenError | HttpTlsError;

export interface HttpService {
  /** Serves `handler` until `close` or until the scope closes. */
  readonly serve: <R>(
    options: ServeOptions,
    handler: HttpHandler<R>,
  ) => Effect.Effect<HttpServer, HttpError, R | Scope.Scope>;
}

export class Http extends Context.Service<Http, HttpService>()("danm/core/ports/http/Http") {}

/** Shown as `hostname:port`, brackets around IPv6 literals. */
export const showAddress = (hostname: string, port: number): string =>
  hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
