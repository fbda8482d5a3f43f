// Where the node daemon's requests come from: a unix socket the thin clients connect to (live layer:
// adapters/cniserver/live.ts). A port, so the core never touches sockets and tests can drive the handler directly.
import { Context, type Effect, Schema, type Scope } from "effect";

export class CniListenerError extends Schema.TaggedError<CniListenerError>()("CniListenerError", {
  path: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `listening on ${this.path}: ${this.reason}`;
  }
}

export interface CniListenerService {
  /**
   * Serves `handle` on the unix socket `path` until the scope closes: each connection carries one JSON request;
   * the handler's answer goes back as one JSON line. Replaces a stale socket file.
   */
  readonly serve: (
    path: string,
    handle: (request: unknown) => Effect.Effect<unknown>,
  ) => Effect.Effect<void, CniListenerError, Scope.Scope>;
  /**
   * Sends one request over the socket at `path` as a thin client would and returns the handler's answer: proves that
   * the socket accepts connections and the handler answers (readiness).
   */
  readonly probe: (path: string, request: unknown) => Effect.Effect<unknown, CniListenerError>;
}

export class CniListener
  extends Context.Service<CniListener, CniListenerService>()("danm/core/ports/cni_listener/CniListener") {}
