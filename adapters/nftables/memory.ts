// The in-memory PolicyTables twin: a map from netns path to the table last applied, for unit tests and the sim.
// It keeps every operation in order so tests can check what would have reached the kernel. A patch holds when the
// table is the one it starts from (as the kernel refuses to delete an element that is not there) and then makes it
// the patch's result.
import { Effect, Layer } from "effect";
import {
  PolicyNetnsGone,
  PolicyTableError,
  PolicyTables,
  type PolicyTablesError,
  type PolicyTablesService,
  PolicyToolMissing,
  type TablePatch,
} from "../../core/ports/policy_tables.ts";

export interface PolicyTableOp {
  readonly op: "apply" | "patch" | "remove";
  readonly netns: string;
  /** The table after the operation (apply, patch). */
  readonly ruleset?: string;
  readonly patch?: TablePatch;
}

export class MemoryPolicyTables {
  /** The table in each netns, as applied. */
  readonly tables = new Map<string, string>();
  readonly ops: PolicyTableOp[] = [];
  /** Netns paths that exist; undefined = every path exists. Operations on others fail with PolicyNetnsGone. */
  netnsPaths: Set<string> | undefined = undefined;
  /** How long each apply takes (as nft does on a big table); `peakApplies` is the most that ran at once. */
  applyMs = 0;
  peakApplies = 0;
  private running = 0;
  /** Set: every operation fails as on a node without this program (nft or nsenter). */
  missingTool: string | undefined = undefined;
  /** Makes the next operations on a netns fail (as nft would on a ruleset it refuses), until cleared. */
  readonly failing = new Map<string, string>();

  private check(op: PolicyTableOp["op"] | "read", netns: string): Effect.Effect<void, PolicyTablesError> {
    if (this.missingTool) {
      return Effect.fail(new PolicyToolMissing({ program: this.missingTool, detail: "not installed" }));
    }
    if (this.netnsPaths && !this.netnsPaths.has(netns)) {
      return Effect.fail(new PolicyNetnsGone({ netns, detail: "no such netns" }));
    }
    const stderr = this.failing.get(netns);
    return stderr === undefined ? Effect.void : Effect.fail(new PolicyTableError({ op, netns, stderr }));
  }

  readonly service: PolicyTablesService = {
    apply: (netns, ruleset) =>
      Effect.andThen(
        this.check("apply", netns),
        Effect.sync(() => this.peakApplies = Math.max(this.peakApplies, ++this.running)).pipe(
          Effect.andThen(Effect.sleep(this.applyMs)),
          Effect.andThen(Effect.sync(() => {
            this.ops.push({ op: "apply", netns, ruleset });
            this.tables.set(netns, ruleset);
          })),
          Effect.ensuring(Effect.sync(() => this.running--)),
        ),
      ),
    patch: (netns, patch) =>
      Effect.andThen(
        this.check("patch", netns),
        Effect.suspend(() => {
          if (this.tables.get(netns) !== patch.from) {
            return Effect.fail(
              new PolicyTableError({ op: "patch", netns, stderr: "Error: element does not exist (table differs)" }),
            );
          }
          this.ops.push({ op: "patch", netns, ruleset: patch.to, patch });
          this.tables.set(netns, patch.to);
          return Effect.void;
        }),
      ),
    remove: (netns) =>
      Effect.andThen(
        this.check("remove", netns),
        Effect.sync(() => {
          this.ops.push({ op: "remove", netns });
          this.tables.delete(netns);
        }),
      ),
    read: (netns) => Effect.andThen(this.check("read", netns), Effect.sync(() => this.tables.get(netns))),
  };
}

export const layerMemoryPolicyTables = (t: MemoryPolicyTables = new MemoryPolicyTables()): Layer.Layer<PolicyTables> =>
  Layer.succeed(PolicyTables, t.service);
