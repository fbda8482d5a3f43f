// A compare-and-swap IPBlock store for allocator unit tests, with fault injection.
// (The Kube-backed store is exercised against the in-memory Kube twin and the real apiserver elsewhere.)
import { Effect, Layer } from "effect";
import type { IPBlock } from "../../../core/api/ipam.ts";
import { BlockRace, BlockStore, BlockStoreFailure } from "../../../core/ipam/store.ts";

export interface FakeBlockStore {
  readonly blocks: Map<string, IPBlock>;
  /** Probability that a successful write reports a failure to the writer (a lost acknowledgement). */
  lostAckRate: number;
  writes: number;
  layer: Layer.Layer<BlockStore>;
}

export function fakeBlockStore(): FakeBlockStore {
  let rv = 1;
  const blocks = new Map<string, IPBlock>();
  const state: FakeBlockStore = {
    blocks,
    lostAckRate: 0,
    writes: 0,
    layer: undefined as unknown as Layer.Layer<BlockStore>,
  };
  const clone = (b: IPBlock): IPBlock => structuredClone(b);
  const ack = (name: string, b: IPBlock): Effect.Effect<IPBlock, BlockStoreFailure> =>
    Math.random() < state.lostAckRate
      ? Effect.fail(new BlockStoreFailure({ operation: "write", name, cause: "connection reset (injected)" }))
      : Effect.succeed(clone(b));
  state.layer = Layer.succeed(
    BlockStore,
    BlockStore.of({
      listNetwork: (uid) =>
        Effect.sync(() => [...blocks.values()].filter((b) => b.spec.network.uid === uid).map(clone)),
      listAll: () => Effect.sync(() => [...blocks.values()].map(clone)),
      get: (name) => Effect.sync(() => (blocks.has(name) ? clone(blocks.get(name)!) : undefined)),
      create: (b) =>
        Effect.suspend((): Effect.Effect<IPBlock, BlockRace | BlockStoreFailure> => {
          const name = b.metadata.name!;
          if (blocks.has(name)) return Effect.fail(new BlockRace({ name, kind: "exists" }));
          const stored = clone({
            ...b,
            metadata: { ...b.metadata, resourceVersion: String(rv++), uid: crypto.randomUUID() },
          });
          blocks.set(name, stored);
          state.writes++;
          return ack(name, stored);
        }),
      update: (b) =>
        Effect.suspend((): Effect.Effect<IPBlock, BlockRace | BlockStoreFailure> => {
          const name = b.metadata.name!;
          const cur = blocks.get(name);
          if (!cur) return Effect.fail(new BlockRace({ name, kind: "gone" }));
          if (cur.metadata.resourceVersion !== b.metadata.resourceVersion) {
            return Effect.fail(new BlockRace({ name, kind: "conflict" }));
          }
          const stored = clone({ ...b, metadata: { ...b.metadata, resourceVersion: String(rv++) } });
          blocks.set(name, stored);
          state.writes++;
          return ack(name, stored);
        }),
      remove: (b) =>
        Effect.suspend((): Effect.Effect<void, BlockRace> => {
          const name = b.metadata.name!;
          const cur = blocks.get(name);
          if (!cur) return Effect.fail(new BlockRace({ name, kind: "gone" }));
          if (cur.metadata.resourceVersion !== b.metadata.resourceVersion) {
            return Effect.fail(new BlockRace({ name, kind: "conflict" }));
          }
          blocks.delete(name);
          return Effect.void;
        }),
    }),
  );
  return state;
}
