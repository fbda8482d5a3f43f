// netwatcher's own failures. Each message names the operation, the object and the reason, like the ports' errors.
import { Schema } from "effect";

const fields = {
  /** e.g. "create host interface", "start netwatcher". */
  operation: Schema.String,
  /** e.g. "vx_internal on node-1". */
  object: Schema.String,
  reason: Schema.String,
};

/**
 * A host interface the networks ask for cannot be put in place on this node (missing host device, MTU that does
 * not fit, a foreign link in the way, a conflicting network …). Reported per interface, never fatal for the agent.
 */
export class HostInterfaceRefused extends Schema.TaggedError<HostInterfaceRefused>()("HostInterfaceRefused", fields) {
  override get message(): string {
    return `${this.operation} ${this.object}: ${this.reason}`;
  }
}

/** The agent cannot run: no network API to watch, or a watch died with an error it will not retry. */
export class NetwatcherFailed extends Schema.TaggedError<NetwatcherFailed>()("NetwatcherFailed", fields) {
  override get message(): string {
    return `${this.operation} ${this.object}: ${this.reason}`;
  }
}

/** A network status write kept losing compare-and-swap races (or the apiserver refused it). */
export class StatusWriteFailed extends Schema.TaggedError<StatusWriteFailed>()("StatusWriteFailed", fields) {
  override get message(): string {
    return `${this.operation} ${this.object}: ${this.reason}`;
  }
}
