// Typed failures of the danm CNI. Every message names the operation, the object and the reason; the daemon turns
// them into CNI error JSON (protocol.ts `CniError`) at the edge.
import { Effect, Schema } from "effect";
import { CniError, ErrorCode } from "./protocol.ts";

/** One attachment (network → pod interface) could not be set up or torn down. */
export class AttachmentError extends Schema.TaggedError<AttachmentError>()("AttachmentError", {
  /** e.g. "DanmNet ns/net1", "NetworkAttachmentDefinition ns/nad". */
  network: Schema.String,
  iface: Schema.String,
  /** e.g. "reserve addresses", "create ipvlan", "macvlan ADD". */
  operation: Schema.String,
  reason: Schema.String,
  /** A transient condition of the node (StepError.retriable). */
  retriable: Schema.optionalKey(Schema.Boolean),
}) {
  override get message(): string {
    return `network ${this.network} (${this.iface}): ${this.operation}: ${this.reason}`;
  }
}

/** A delegated CNI plugin failed, timed out, or answered something that is not a CNI result. */
export class DelegateError extends Schema.TaggedError<DelegateError>()("DelegateError", {
  plugin: Schema.String,
  command: Schema.String,
  /** The plugin's CNI error code, when it printed a CNI error. */
  code: Schema.optionalKey(Schema.Number),
  reason: Schema.String,
}) {
  override get message(): string {
    return `${this.plugin} ${this.command}: ${this.code === undefined ? "" : `error ${this.code}: `}${this.reason}`;
  }
}

/** A delegate configuration (static file, NAD spec.config) is missing or malformed. */
export class DelegateConfigError extends Schema.TaggedError<DelegateConfigError>()("DelegateConfigError", {
  /** A path or "NetworkAttachmentDefinition ns/name". */
  source: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `delegate configuration ${this.source}: ${this.reason}`;
  }
}

/** Reading or writing the node-local sandbox records failed. */
export class SandboxStateError extends Schema.TaggedError<SandboxStateError>()("SandboxStateError", {
  operation: Schema.String,
  containerId: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `${this.operation} sandbox record ${this.containerId}: ${this.reason}`;
  }
}

/** Everything ADD failed on, one line per network, as one CNI error (DANM: "CNI operation for network:X failed"). */
export function attachmentsFailed(
  what: string,
  failures: ReadonlyArray<AttachmentError>,
  total: number,
): CniError {
  const networks = [...new Set(failures.map((f) => f.network))];
  return new CniError({
    // Only a node too busy to run it failed (no delegate slot in time): the runtime should simply try again.
    code: failures.length > 0 && failures.every((f) => f.retriable)
      ? ErrorCode.tryAgainLater
      : ErrorCode.attachmentFailed,
    msg: `${what}: ${failures.length} of ${total} attachment(s) failed (${networks.join(", ")})`,
    details: failures.map((f) => f.message).join("\n"),
  });
}

/** A CNI error with a plain message; `code` defaults to danm's generic attachment failure. */
export const cniError = (msg: string, details?: string, code: number = ErrorCode.attachmentFailed): CniError =>
  new CniError({ code, msg, ...(details ? { details } : {}) });

/** One step of setting up or tearing down an interface failed; add.ts names the network it belonged to. */
export class StepError extends Schema.TaggedError<StepError>()("StepError", {
  operation: Schema.String,
  reason: Schema.String,
  /** Failed on a transient condition (a delegate's CNI error 11, "try again later"), not on the pod's request. */
  retriable: Schema.optionalKey(Schema.Boolean),
}) {
  override get message(): string {
    return `${this.operation}: ${this.reason}`;
  }
}

/** Maps any failure of the piped effect to a StepError naming `operation` (a StepError passes through). */
export const step = (operation: string) =>
<A, E extends { readonly message: string }, R>(
  e: Effect.Effect<A, E, R>,
): Effect.Effect<A, StepError, R> =>
  Effect.mapError(e, (err) =>
    err instanceof StepError ? err : new StepError({
      operation,
      reason: err.message,
      ...(err instanceof DelegateError && err.code === ErrorCode.tryAgainLater ? { retriable: true } : {}),
    }));
