// The live PolicyTables layer: the `nft` binary, run inside the pod's netns by `nsenter --net=<path>`, through the
// Process port (an argv array, an exact environment, no shell). Rulesets go to nft on stdin (`nft -f -`), never on
// its command line, so nothing from a policy is ever parsed as an argument. A patch of set elements is one `nft -f -`
// of `delete element`/`add element` lines (nft commits the file in one transaction) — or, with `patchWith:
// "netlink"`, one nf_tables netlink batch from this process (adapters/netlink/nftables.ts: no process per pod; the
// kernel commits the batch whole or not at all), elements that encoder does not handle still going through nft.
import { Effect, Layer } from "effect";
import { KernelError } from "../netlink/errors.ts";
import { concatKey, NetnsUnavailable, NotEncodable, sendElementBatch } from "../netlink/nftables.ts";
import { decodeText, type ExecResult, Process, type ProcessError, tail } from "../../core/ports/process.ts";
import {
  PolicyNetnsGone,
  PolicyTableError,
  PolicyTableFamily,
  PolicyTableName,
  PolicyTables,
  type PolicyTablesError,
  type PolicyTablesService,
  PolicyToolMissing,
  type TablePatch,
} from "../../core/ports/policy_tables.ts";

export interface LivePolicyTablesOptions {
  /** Where nsenter and nft are looked up. */
  readonly path?: string;
  /** Default 10 s: nft is quick; past this the process is killed and the operation fails. */
  readonly timeoutMs?: number;
  /**
   * How set-element patches reach the kernel. Default "netlink" (no process per pod: bench:netpol's pod add/delete
   * p99 2,085 → 1,339 ms, README #22); "nft" runs nsenter + nft for every patch.
   */
  readonly patchWith?: "netlink" | "nft";
}

const table = `${PolicyTableFamily} ${PolicyTableName}`;
// `table X` then `delete table X` in the same transaction: creating an existing table is a no-op, so the delete
// always finds it; what follows then builds the new table. nft commits the whole file or none of it.
const dropPrelude = `table ${table}\ndelete table ${table}\n`;

/** A patch as nft commands: every removal first, so an element may be replaced by one overlapping it. */
const patchScript = (patch: TablePatch): string => {
  const lines = (verb: string, pick: (c: TablePatch["sets"][number]) => ReadonlyArray<string>) =>
    patch.sets.flatMap((c) => {
      const elements = pick(c);
      return elements.length === 0 ? [] : [`${verb} element ${table} ${c.set} { ${elements.join(", ")} }\n`];
    });
  return [...lines("delete", (c) => c.remove), ...lines("add", (c) => c.add)].join("");
};

/** The patch as netlink element batches, or undefined when an element is not one the encoder handles. */
const encodePatch = (patch: TablePatch) => {
  try {
    const part = (pick: (c: TablePatch["sets"][number]) => ReadonlyArray<string>) =>
      patch.sets.map((c) => ({ set: c.set, elements: pick(c).map(concatKey) }));
    return { remove: part((c) => c.remove), add: part((c) => c.add) };
  } catch (e) {
    if (e instanceof NotEncodable) return undefined;
    throw e;
  }
};

/** What a non-zero exit means: nsenter could not enter the netns or start nft (127), or nft refused. */
const failure = (op: PolicyTableError["op"], netns: string, r: ExecResult): PolicyTablesError => {
  const stderr = tail(r.stderr);
  // util-linux says "failed to execute nft", busybox's nsenter (the node image's) "can't execute 'nft'".
  if (r.code === 127 && /failed to execute nft|can't execute 'nft'/.test(stderr)) {
    return new PolicyToolMissing({ program: "nft", detail: stderr });
  }
  if (/^nsenter: (cannot|can't) open .*No such file or directory/m.test(stderr)) {
    return new PolicyNetnsGone({ netns, detail: stderr });
  }
  return new PolicyTableError({ op, netns, stderr: stderr || `exit code ${r.code}` });
};

export const makeLivePolicyTables = (
  process: Process["Service"],
  options: LivePolicyTablesOptions = {},
): PolicyTablesService => {
  const env = { PATH: options.path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" };
  const run = (
    op: PolicyTableError["op"],
    netns: string,
    nftArgs: ReadonlyArray<string>,
    stdin?: string,
  ): Effect.Effect<string, PolicyTablesError> =>
    process.exec({
      argv: ["nsenter", `--net=${netns}`, "--", "nft", ...nftArgs],
      env,
      ...(stdin === undefined ? {} : { stdin }),
      timeoutMs: options.timeoutMs ?? 10_000,
    }).pipe(
      Effect.mapError((e: ProcessError): PolicyTablesError =>
        e._tag === "ProcessNotFound"
          ? new PolicyToolMissing({ program: "nsenter", detail: e.detail })
          : new PolicyTableError({ op, netns, stderr: e.message })
      ),
      Effect.flatMap((r) => r.code === 0 ? Effect.succeed(decodeText(r.stdout)) : Effect.fail(failure(op, netns, r))),
    );
  return {
    apply: (netns, ruleset) => Effect.asVoid(run("apply", netns, ["-f", "-"], dropPrelude + ruleset)),
    patch: (netns, patch) => {
      const batch = (options.patchWith ?? "netlink") === "netlink" ? encodePatch(patch) : undefined;
      if (batch) {
        return Effect.tryPromise({
          try: () => sendElementBatch(netns, PolicyTableName, batch.remove, batch.add),
          catch: (e): PolicyTablesError =>
            e instanceof NetnsUnavailable ? new PolicyNetnsGone({ netns, detail: e.message }) : new PolicyTableError({
              op: "patch",
              netns,
              stderr: `netlink: ${e instanceof KernelError || e instanceof Error ? e.message : String(e)}`,
            }),
        });
      }
      const script = patchScript(patch);
      return script === "" ? Effect.void : Effect.asVoid(run("patch", netns, ["-f", "-"], script));
    },
    remove: (netns) => Effect.asVoid(run("remove", netns, ["-f", "-"], dropPrelude)),
    read: (netns) =>
      run("read", netns, ["list", "table", PolicyTableFamily, PolicyTableName]).pipe(
        Effect.catchIf(
          // nft's answer when the table does not exist: "Error: No such file or directory" naming the command.
          (e) => e._tag === "PolicyTableError" && /^Error: No such file or directory\s+list table/.test(e.stderr),
          () => Effect.succeed(undefined),
        ),
      ),
  };
};

export const layerLivePolicyTables = (
  options: LivePolicyTablesOptions = {},
): Layer.Layer<PolicyTables, never, Process> =>
  Layer.effect(
    PolicyTables,
    Effect.gen(function* () {
      return makeLivePolicyTables(yield* Process, options);
    }),
  );
