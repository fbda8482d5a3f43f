// The per-pod-netns nftables table that enforces MultiNetworkPolicy (#22), as the core sees it: one table,
// `table inet danm_netpol`, in each policed pod's network namespace, replaced whole in one transaction — or, when
// only the elements of its sets change (peers coming and going), patched in one transaction — so a pod never runs
// with half a ruleset.
//
// Live layer: adapters/nftables/live.ts (`nft -f -` fed on stdin inside the pod's netns through the Process port);
// in-memory layer: adapters/nftables/memory.ts (records the tables, for unit tests and the sim).
import { Context, type Effect, Schema } from "effect";

/** The one table danm owns in a pod's netns; nothing else in the netns is touched. */
export const PolicyTableFamily = "inet";
export const PolicyTableName = "danm_netpol";

/** A program the live layer needs is not installed (or not in the agent's PATH). */
export class PolicyToolMissing extends Schema.TaggedError<PolicyToolMissing>()("PolicyToolMissing", {
  program: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `network policy enforcement needs "${this.program}", which is not installed or not in PATH` +
      (this.detail ? ` (${this.detail})` : "");
  }
}

/** The pod's network namespace is gone (the pod was deleted meanwhile): nothing left to police. */
export class PolicyNetnsGone extends Schema.TaggedError<PolicyNetnsGone>()("PolicyNetnsGone", {
  netns: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `network namespace ${this.netns} is gone: ${this.detail}`;
  }
}

/** nft refused or failed the operation; `stderr` is nft's own explanation (with the offending line for a ruleset). */
export class PolicyTableError extends Schema.TaggedError<PolicyTableError>()("PolicyTableError", {
  op: Schema.Literals(["apply", "patch", "remove", "read"]),
  netns: Schema.String,
  stderr: Schema.String,
}) {
  override get message(): string {
    return `nftables ${this.op} of table ${PolicyTableFamily} ${PolicyTableName} in ${this.netns} failed: ${this.stderr}`;
  }
}

/** Elements to take out of and put into one set of the table (each as nft reads it: rendered and checked by core). */
export interface SetElementsChange {
  readonly set: string;
  readonly add: ReadonlyArray<string>;
  readonly remove: ReadonlyArray<string>;
}

/**
 * A change of elements only, from the table `from` (a ruleset as `apply` takes it, the one the kernel should have)
 * to `to` (the ruleset the table then equals, element for element; the set elements' order may differ).
 */
export interface TablePatch {
  readonly from: string;
  readonly to: string;
  readonly sets: ReadonlyArray<SetElementsChange>;
}

export type PolicyTablesError = PolicyToolMissing | PolicyNetnsGone | PolicyTableError;

export interface PolicyTablesService {
  /**
   * Replaces the pod's table with `ruleset` atomically (one nft transaction: the old table goes and the new one
   * comes, or nothing changes). `ruleset` is the complete table, `table inet danm_netpol { … }`, and nothing else.
   */
  readonly apply: (netns: string, ruleset: string) => Effect.Effect<void, PolicyTablesError>;
  /**
   * Removes and adds set elements, all in one transaction (every removal before the additions). Fails — changing
   * nothing — when the table is not there or an element to remove is not in it: then the caller replaces the table.
   */
  readonly patch: (netns: string, patch: TablePatch) => Effect.Effect<void, PolicyTablesError>;
  /** Removes the table; a netns without it is left as it is (no error). */
  readonly remove: (netns: string) => Effect.Effect<void, PolicyTablesError>;
  /**
   * The table as the kernel has it now (nft's own normalized listing), or undefined when there is none. Compare it
   * with what `read` returned right after an `apply` to see whether anything changed it since.
   */
  readonly read: (netns: string) => Effect.Effect<string | undefined, PolicyTablesError>;
}

export class PolicyTables
  extends Context.Service<PolicyTables, PolicyTablesService>()("danm/core/ports/policy_tables/PolicyTables") {}
