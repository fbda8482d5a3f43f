// One lock per key, made on first use and dropped once nobody holds or waits for it: work on the same key is
// serialised, work on other keys never waits. Users: the CNI runtime (one lock per sandbox) and the policy controller
// (one per pod: a pass and an ADD never interleave on the same pod's table, and an ADD never waits behind a pass
// over other pods, #22).
import { Effect, Semaphore } from "effect";

export interface KeyedLocks {
  /** Runs `e` holding the lock of `key`; locks nobody holds or waits for are dropped. */
  readonly withLock: <A, E, R>(key: string, e: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>;
  /** The keys whose lock is held or waited for right now. */
  readonly busy: () => ReadonlySet<string>;
}

export const makeKeyedLocks = (): KeyedLocks => {
  const locks = new Map<string, { sem: Semaphore.Semaphore; users: number }>();
  return {
    busy: () => new Set(locks.keys()),
    withLock: (key, e) =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          let l = locks.get(key);
          if (!l) locks.set(key, l = { sem: Semaphore.makeUnsafe(1), users: 0 });
          l.users++;
          return l;
        }),
        (l) => l.sem.withPermit(e),
        (l) =>
          Effect.sync(() => {
            if (--l.users === 0) locks.delete(key);
          }),
      ),
  };
};
