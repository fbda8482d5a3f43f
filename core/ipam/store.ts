// The persistence the allocator needs: IPBlock objects with compare-and-swap writes. Implemented over the
// Kube port (blockStoreFromKube) in production and tests; kept narrow so the allocator's logic does not
// depend on how Kubernetes errors look.
import { Context, type Effect, Schema } from "effect";
import type { IPBlock } from "../api/ipam.ts";

/** The write lost a race: the object changed (or appeared, or vanished) since it was read. */
export class BlockRace extends Schema.TaggedError<BlockRace>()("BlockRace", {
  name: Schema.String,
  kind: Schema.Literals(["conflict", "exists", "gone"]),
}) {}

export class BlockStoreFailure extends Schema.TaggedError<BlockStoreFailure>()("BlockStoreFailure", {
  operation: Schema.String,
  name: Schema.String,
  cause: Schema.String,
}) {
  override get message() {
    return `${this.operation} IPBlock ${this.name}: ${this.cause}`;
  }
}

export class BlockStore extends Context.Service<BlockStore, {
  /** Every block of one network (by network UID). */
  readonly listNetwork: (networkUid: string) => Effect.Effect<ReadonlyArray<IPBlock>, BlockStoreFailure>;
  /** Every block in the cluster (reclaimer, consistency checker). */
  readonly listAll: () => Effect.Effect<ReadonlyArray<IPBlock>, BlockStoreFailure>;
  readonly get: (name: string) => Effect.Effect<IPBlock | undefined, BlockStoreFailure>;
  /**
   * Creates the block; BlockRace("exists") when another writer created it first. Create and update answer with the
   * block as sent (the same reservation objects) under its new metadata: the allocator re-indexes only what changed.
   */
  readonly create: (block: IPBlock) => Effect.Effect<IPBlock, BlockRace | BlockStoreFailure>;
  /** Replaces the block if its resourceVersion is still current; BlockRace otherwise. */
  readonly update: (block: IPBlock) => Effect.Effect<IPBlock, BlockRace | BlockStoreFailure>;
  /** Deletes the block if its resourceVersion is still current. */
  readonly remove: (block: IPBlock) => Effect.Effect<void, BlockRace | BlockStoreFailure>;
}>()("danm/core/ipam/BlockStore") {}
