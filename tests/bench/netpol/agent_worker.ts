// One node's policy controller for bench:netpol, in a Worker of its own (its own thread and event loop, as a node
// agent process has; the bench's driver and observer stay off its thread). It is the agent's controller as shipped
// (core/netpol/controller.ts) over the live kube client and the live nft tables, which are wrapped only to report
// each table written to the kernel — netns, script (a patch's resulting table), when nft returned — to the bench.
import { Effect, Layer } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { layerLiveProcess } from "../../../adapters/process/live.ts";
import { makeLivePolicyTables } from "../../../adapters/nftables/live.ts";
import { Process } from "../../../core/ports/process.ts";
import { PolicyTables, type TablePatch } from "../../../core/ports/policy_tables.ts";
import { engineRenderer, make as makeController } from "../../../core/netpol/controller.ts";

export interface AgentStart {
  readonly kubeconfig: string;
  readonly node: string;
  readonly patchWith: "nft" | "netlink";
}

/** What the worker tells the bench. `at` is wall-clock ms (performance.timeOrigin + now) so threads compare. */
export type AgentMessage =
  | {
    readonly kind: "applied";
    readonly netns: string;
    readonly script: string;
    readonly at: number;
    /** How long the nft transaction took (the rest of a change's time is the controller's own). */
    readonly nftMs: number;
    /** Set elements patched rather than the table replaced whole. */
    readonly patched: boolean;
  }
  | { readonly kind: "removed"; readonly netns: string; readonly at: number; readonly nftMs: number }
  | { readonly kind: "failed"; readonly message: string };

const now = () => performance.timeOrigin + performance.now();
/** The worker's global scope (Deno's default types describe a window). */
const scope = self as unknown as {
  onmessage: ((e: MessageEvent<AgentStart>) => void) | null;
  postMessage: (m: AgentMessage) => void;
};
const post = (m: AgentMessage) => scope.postMessage(m);

/** Runs a table operation and, once it succeeded, posts what `report` makes of when it ended and how long it took. */
const timed = <E>(operation: Effect.Effect<void, E>, report: (at: number, nftMs: number) => AgentMessage) =>
  Effect.suspend(() => {
    const start = now();
    return Effect.tap(operation, () =>
      Effect.sync(() => {
        const at = now();
        post(report(at, at - start));
      }));
  });

const observedTables = (patchWith: AgentStart["patchWith"]) =>
  Layer.effect(
    PolicyTables,
    Effect.gen(function* () {
      const live = makeLivePolicyTables(yield* Process, { patchWith });
      return {
        ...live,
        apply: (netns: string, script: string) =>
          timed(
            live.apply(netns, script),
            (at, nftMs) => ({ kind: "applied", netns, script, at, nftMs, patched: false }),
          ),
        patch: (netns: string, patch: TablePatch) =>
          timed(
            live.patch(netns, patch),
            (at, nftMs) => ({ kind: "applied", netns, script: patch.to, at, nftMs, patched: true }),
          ),
        remove: (netns: string) => timed(live.remove(netns), (at, nftMs) => ({ kind: "removed", netns, at, nftMs })),
      };
    }),
  ).pipe(Layer.provide(layerLiveProcess));

scope.onmessage = (e) => {
  const { kubeconfig, node, patchWith } = e.data;
  const kube = layerLiveKube({ config: { _tag: "Kubeconfig", path: kubeconfig } }).pipe(Layer.orDie);
  Effect.runFork(
    Effect.scoped(Effect.gen(function* () {
      const controller = yield* makeController({ nodeName: node, render: engineRenderer, resyncPeriod: "1 hour" });
      return yield* controller.join;
    })).pipe(
      Effect.provide(Layer.mergeAll(kube, observedTables(patchWith))),
      Effect.catchCause((cause) => Effect.sync(() => post({ kind: "failed", message: String(cause) }))),
    ),
  );
};
