// An informer: one list+watch feeding a keyed snapshot (SubscriptionRef), a change feed (PubSub) and a synced
// signal. adapters/kube/client.ts shares one per resource type and filters per process (RcMap).
import { Deferred, Effect, PubSub, type Scope, Semaphore, Stream, SubscriptionRef } from "effect";
import type {
  Informer,
  InformerEvent,
  InformerIndex,
  InformerState,
  KubeError,
  WatchEvent,
} from "../../core/ports/kube.ts";
import { objectKey } from "../../core/ports/kube.ts";
import { deepEqual } from "./patch.ts";
import { SnapshotMap } from "./snapshot_map.ts";

/** A decoded object with the key the informer files it under (A itself is opaque here). */
export interface Keyed<A> {
  readonly key: string;
  readonly object: A;
  /** metadata.resourceVersion, to tell real updates from repeats after a relist. */
  readonly resourceVersion: string;
}

type Item<A> = InformerEvent<A> | { readonly _tag: "Failed"; readonly error: KubeError };

/** The keys of the cached objects filed under each value an index function gives. */
class ValueIndex<A> {
  private readonly byValue = new Map<string, Set<string>>();

  constructor(readonly valuesOf: (object: A) => ReadonlyArray<string>) {}

  file(key: string, object: A): void {
    for (const v of this.valuesOf(object)) {
      let keys = this.byValue.get(v);
      if (!keys) this.byValue.set(v, keys = new Set());
      keys.add(key);
    }
  }

  unfile(key: string, object: A): void {
    for (const v of this.valuesOf(object)) {
      const keys = this.byValue.get(v);
      if (keys?.delete(key) && keys.size === 0) this.byValue.delete(v);
    }
  }

  rebuild(items: Iterable<readonly [string, A]>): void {
    this.byValue.clear();
    for (const [key, object] of items) this.file(key, object);
  }

  keys(value: string): Iterable<string> {
    return this.byValue.get(value) ?? [];
  }
}

export const makeInformer = <A>(
  events: Stream.Stream<WatchEvent<Keyed<A>>, KubeError>,
  describe: string,
): Effect.Effect<Informer<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    // Snapshots are persistent maps: applying an event costs O(log n), not a copy of the whole cache.
    let items = SnapshotMap.empty<A>();
    const state = yield* SubscriptionRef.make<InformerState<A>>({ synced: false, resourceVersion: "", items });
    const hub = yield* PubSub.unbounded<Item<A>>();
    yield* Effect.addFinalizer(() => PubSub.shutdown(hub));
    // Applying a batch and taking a subscription + snapshot exclude each other, so a subscriber sees every
    // change after its snapshot exactly once.
    const lock = yield* Semaphore.make(1);
    const synced = yield* Deferred.make<void, KubeError>();
    // Resource versions of the stored objects, to skip no-op "updates" after a relist.
    const versions = new Map<string, string>();
    // Indexes change with `items`, in the same synchronous step of a batch.
    const indexes = new Map<(object: A) => ReadonlyArray<string>, ValueIndex<A>>();

    const applyBatch = (batch: ReadonlyArray<WatchEvent<Keyed<A>>>) =>
      lock.withPermit(Effect.gen(function* () {
        const cur = yield* SubscriptionRef.get(state);
        let resourceVersion = cur.resourceVersion, isSynced = cur.synced;
        const out: Item<A>[] = [];
        for (const ev of batch) {
          switch (ev._tag) {
            case "Added":
            case "Modified": {
              const { key, object } = ev.object;
              const previous = items.get(key);
              items = items.set(key, object);
              versions.set(key, ev.object.resourceVersion);
              for (const ix of indexes.values()) {
                if (previous !== undefined) ix.unfile(key, previous);
                ix.file(key, object);
              }
              out.push(
                previous === undefined ? { _tag: "Added", key, object } : { _tag: "Updated", key, object, previous },
              );
              break;
            }
            case "Deleted": {
              const { key, object } = ev.object;
              // Unfiled as it was cached: the deleted object's last state may differ.
              const cached = items.get(key);
              if (cached !== undefined) { for (const ix of indexes.values()) ix.unfile(key, cached); }
              items = items.delete(key);
              versions.delete(key);
              out.push({ _tag: "Deleted", key, object });
              break;
            }
            case "Bookmark":
              break;
            case "Sync": {
              const fresh = new Map(ev.items.map((k) => [k.key, k.object] as const));
              if (isSynced) {
                // A relist: publish what changed while we were not watching, then the full state.
                for (const [key, object] of items) {
                  if (!fresh.has(key)) out.push({ _tag: "Deleted", key, object });
                }
                for (const k of ev.items) {
                  const previous = items.get(k.key);
                  if (previous === undefined) out.push({ _tag: "Added", key: k.key, object: k.object });
                  else if (versions.get(k.key) !== k.resourceVersion && !deepEqual(previous, k.object)) {
                    out.push({ _tag: "Updated", key: k.key, object: k.object, previous });
                  }
                }
              }
              items = SnapshotMap.from(ev.items.map((k) => [k.key, k.object] as const));
              for (const ix of indexes.values()) ix.rebuild(items);
              versions.clear();
              for (const k of ev.items) versions.set(k.key, k.resourceVersion);
              isSynced = true;
              out.push({ _tag: "Synced", items, resourceVersion: ev.resourceVersion });
              break;
            }
          }
          if (ev.resourceVersion) resourceVersion = ev.resourceVersion;
        }
        yield* SubscriptionRef.set(state, { synced: isSynced, resourceVersion, items });
        if (out.length > 0) yield* PubSub.publishAll(hub, out);
        if (isSynced) yield* Deferred.succeed(synced, undefined);
      }));

    yield* events.pipe(
      Stream.runForEachArray(applyBatch),
      Effect.catch((error: KubeError) =>
        Effect.gen(function* () {
          yield* Effect.logError(`informer for ${describe} stopped: ${error.message}`);
          yield* Deferred.fail(synced, error);
          yield* PubSub.publish(hub, { _tag: "Failed", error });
        })
      ),
      Effect.forkScoped,
    );

    const changes: Stream.Stream<InformerEvent<A>, KubeError> = Stream.unwrap(Effect.gen(function* () {
      yield* Deferred.await(synced);
      const [snapshot, sub] = yield* lock.withPermit(
        Effect.gen(function* () {
          const sub = yield* PubSub.subscribe(hub);
          return [yield* SubscriptionRef.get(state), sub] as const;
        }),
      );
      const first: InformerEvent<A> = {
        _tag: "Synced",
        items: snapshot.items,
        resourceVersion: snapshot.resourceVersion,
      };
      return Stream.concat(
        Stream.succeed(first),
        Stream.fromSubscription(sub).pipe(
          Stream.mapEffect((item) => item._tag === "Failed" ? Effect.fail(item.error) : Effect.succeed(item)),
        ),
      );
    }));

    return {
      state,
      synced: Deferred.await(synced),
      changes,
      get: (name: string, namespace?: string) =>
        Effect.map(SubscriptionRef.get(state), (s) => s.items.get(objectKey(namespace, name))),
      list: Effect.map(SubscriptionRef.get(state), (s) => [...s.items.values()]),
      index: (valuesOf) =>
        lock.withPermit(Effect.sync((): InformerIndex<A> => {
          let ix = indexes.get(valuesOf);
          if (!ix) {
            ix = new ValueIndex(valuesOf);
            ix.rebuild(items);
            indexes.set(valuesOf, ix);
          }
          const found = ix;
          // Resolved through `items`, the state the index was last brought up to.
          return { get: (value) => Effect.sync(() => Array.from(found.keys(value), (key) => items.get(key)!)) };
        })),
    };
  });
