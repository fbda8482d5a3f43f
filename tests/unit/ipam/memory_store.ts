// The IPAM's storage for unit tests: the real Kube-backed BlockStore over the in-memory apiserver twin,
// optionally losing acknowledgements (the write happened, the writer is told it failed) to model crashes
// and connection resets between "reserved" and "recorded".
import { Effect, Layer } from "effect";
import { layerMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { Schema } from "effect";
import { IPBlock, ipBlockResource } from "../../../core/api/ipam.ts";
import { blockStoreFromKube } from "../../../core/ipam/kube.ts";
import { BlockStore, BlockStoreFailure } from "../../../core/ipam/store.ts";

export interface TestStore {
  readonly server: MemoryApiServer;
  /** Probability that a successful write is reported as failed. */
  lostAckRate: number;
  /** Successful writes (creates + updates). */
  writes: number;
  readonly layer: Layer.Layer<BlockStore>;
  readonly blocks: () => ReadonlyArray<IPBlock>;
}

export function memoryStore(): TestStore {
  const server = new MemoryApiServer();
  const base = blockStoreFromKube.pipe(Layer.provide(layerMemoryKube(server)));
  const state: TestStore = {
    server,
    lostAckRate: 0,
    writes: 0,
    blocks: () => server.objects(ipBlockResource).map((o) => Schema.decodeUnknownSync(IPBlock)(o)),
    layer: Layer.effect(
      BlockStore,
      Effect.gen(function* () {
        const store = yield* BlockStore;
        const lossy = (name: string) => (b: IPBlock) =>
          Effect.suspend(() => {
            state.writes++;
            return Math.random() < state.lostAckRate
              ? Effect.fail(new BlockStoreFailure({ operation: "write", name, cause: "connection reset (injected)" }))
              : Effect.succeed(b);
          });
        return BlockStore.of({
          ...store,
          create: (b) => store.create(b).pipe(Effect.flatMap(lossy(b.metadata.name ?? ""))),
          update: (b) => store.update(b).pipe(Effect.flatMap(lossy(b.metadata.name ?? ""))),
        });
      }),
    ).pipe(Layer.provide(base)),
  };
  return state;
}
