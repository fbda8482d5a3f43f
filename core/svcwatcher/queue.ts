// A keyed work queue with client-go's workqueue semantics, for level-triggered controllers:
//   * a key waits at most once: adding it again before a worker takes it is a no-op (events coalesce);
//   * a key is never processed by two workers at once: added while processing, it is queued again once the
//     running pass ends (so the change that caused the add is never missed);
//   * at most `workers` keys are processed at a time;
//   * a failed key comes back after a per-key exponential backoff; a success resets its backoff.
// Keys are never dropped after failures: the state they stand for has to converge eventually, and the errors are
// visible through the handler's own reporting.
import { Clock, Effect, Exit, Queue, type Scope } from "effect";

export interface WorkQueueOptions {
  /** Delay before the first retry of a failed key. Default 25 ms. */
  readonly baseDelayMs?: number;
  /** Ceiling of the doubling retry delay. Default 30 s. */
  readonly maxDelayMs?: number;
}

export interface WorkQueue {
  readonly add: (key: string) => Effect.Effect<void>;
  readonly addAll: (keys: Iterable<string>) => Effect.Effect<void>;
  /** Adds the key after `ms` (an earlier pending delayed add of the same key wins). */
  readonly addAfter: (key: string, ms: number) => Effect.Effect<void>;
  /** Keys waiting for a worker, including delayed ones. */
  readonly pending: Effect.Effect<number>;
  /** Consecutive failures of a key (0 after a success). */
  readonly failures: (key: string) => number;
  /** The delay the next retry of a key failing for the n-th time in a row waits. */
  readonly backoff: (n: number) => number;
  /**
   * Processes keys with `workers` fibers until interrupted. A handler failure or defect schedules a retry of
   * its key after `backoff(failures)`; reporting the failure is the handler's business.
   */
  readonly run: <E, R>(
    workers: number,
    handler: (key: string) => Effect.Effect<void, E, R>,
  ) => Effect.Effect<never, never, R>;
}

export const makeWorkQueue = (options: WorkQueueOptions = {}): Effect.Effect<WorkQueue, never, Scope.Scope> =>
  Effect.gen(function* () {
    const base = options.baseDelayMs ?? 25;
    const max = options.maxDelayMs ?? 30_000;
    const scope = yield* Effect.scope;
    const ready = yield* Queue.unbounded<string>();
    // Everything below is touched only between yields, so plain collections are race-free on one thread.
    const dirty = new Set<string>();
    const processing = new Set<string>();
    const failureCount = new Map<string, number>();
    /** key → when its pending delayed add fires (ms since epoch). */
    const delayed = new Map<string, number>();

    const addNow = (key: string) => {
      if (dirty.has(key)) return;
      dirty.add(key);
      if (!processing.has(key)) Queue.offerUnsafe(ready, key);
    };
    const add = (key: string) => Effect.sync(() => addNow(key));
    const addAll = (keys: Iterable<string>) =>
      Effect.sync(() => {
        for (const k of keys) addNow(k);
      });
    const addAfter = (key: string, ms: number): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (ms <= 0) return add(key);
        const due = now + ms;
        const pending = delayed.get(key);
        if (pending !== undefined && pending <= due) return Effect.void;
        delayed.set(key, due);
        return Effect.sleep(ms).pipe(
          Effect.andThen(Effect.sync(() => {
            if (delayed.get(key) === due) delayed.delete(key);
            addNow(key);
          })),
          Effect.forkIn(scope),
          Effect.asVoid,
        );
      });
    const backoff = (n: number) => Math.min(max, base * 2 ** Math.max(0, n - 1));

    const run = <E, R>(workers: number, handler: (key: string) => Effect.Effect<void, E, R>) => {
      const worker = Effect.gen(function* () {
        const key = yield* Queue.take(ready);
        dirty.delete(key);
        processing.add(key);
        const exit = yield* Effect.exit(Effect.suspend(() => handler(key)));
        processing.delete(key);
        if (Exit.isFailure(exit)) {
          const n = (failureCount.get(key) ?? 0) + 1;
          failureCount.set(key, n);
          yield* addAfter(key, backoff(n));
        } else failureCount.delete(key);
        if (dirty.has(key)) Queue.offerUnsafe(ready, key);
      }).pipe(Effect.forever);
      return Effect.forEach(Array.from({ length: Math.max(1, workers) }), () => worker, {
        concurrency: "unbounded",
        discard: true,
      }).pipe(Effect.andThen(Effect.never));
    };

    return {
      add,
      addAll,
      addAfter,
      pending: Effect.sync(() => Queue.sizeUnsafe(ready) + delayed.size),
      failures: (key) => failureCount.get(key) ?? 0,
      backoff,
      run,
    } satisfies WorkQueue;
  });
