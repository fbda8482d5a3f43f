// The node daemon's admission of CNI requests: at most `maxConcurrent` run at once and at most `maxQueued` wait for a
// slot; a request beyond that is answered at once as busy (CNI error 11, "try again later", which runtimes retry), so
// a burst of sandboxes cannot grow the daemon's memory or latency without bound. On shutdown (`drain`) the gate stops
// admitting — waiting requests are answered busy — and lets running ones finish for a bounded time; those still
// running then are cut off with a busy answer too, and the runtime's DEL cleans up after them.
import { Clock, Deferred, Effect, Semaphore } from "effect";

export interface GateLimits {
  /** Requests handled at once. */
  readonly maxConcurrent: number;
  /** Requests waiting for a slot; more are refused as busy. */
  readonly maxQueued: number;
}

export interface GateStats {
  readonly running: number;
  readonly queued: number;
  /** Requests answered busy so far (queue full, shutting down or cut off). */
  readonly rejected: number;
}

export interface RequestGate {
  /** Runs `work` in a slot, or answers `busy(reason)` when there is no room or the gate is draining. */
  readonly admit: <A, E, R>(work: Effect.Effect<A, E, R>, busy: (reason: string) => A) => Effect.Effect<A, E, R>;
  /**
   * Stops admitting and waits up to `timeoutMs` for running requests; those still running are then cut off (their
   * `busy` answer is returned to their callers). Resolves once every request has its answer.
   */
  readonly drain: (timeoutMs: number) => Effect.Effect<{ readonly finished: number; readonly cutOff: number }>;
  readonly stats: Effect.Effect<GateStats>;
}

export const makeRequestGate = (limits: GateLimits): Effect.Effect<RequestGate> =>
  Effect.gen(function* () {
    const slots = Semaphore.makeUnsafe(Math.max(1, limits.maxConcurrent));
    const closed = yield* Deferred.make<void>();
    const cutoff = yield* Deferred.make<void>();
    let running = 0, queued = 0, rejected = 0, draining = false;

    const refuse = <A>(busy: (reason: string) => A, reason: string): A => {
      rejected++;
      return busy(reason);
    };

    const admit = <A, E, R>(work: Effect.Effect<A, E, R>, busy: (reason: string) => A): Effect.Effect<A, E, R> =>
      Effect.suspend(() => {
        if (draining) return Effect.succeed(refuse(busy, "the danm node daemon is shutting down"));
        if (running + queued >= limits.maxConcurrent + limits.maxQueued) {
          return Effect.succeed(refuse(
            busy,
            `the danm node daemon is busy: ${running} requests in progress and ${queued} waiting ` +
              `(limits ${limits.maxConcurrent} and ${limits.maxQueued})`,
          ));
        }
        queued++;
        let waiting = true;
        const leaveQueue = () => {
          if (waiting) queued--;
          waiting = false;
        };
        // A slot, or the gate closing while this request still waits for one.
        const slot = Effect.raceFirst(
          Effect.as(slots.take(1), true),
          Effect.as(Deferred.await(closed), false),
        ).pipe(Effect.ensuring(Effect.sync(leaveQueue)));
        return Effect.flatMap(slot, (got): Effect.Effect<A, E, R> => {
          if (!got) return Effect.succeed(refuse(busy, "the danm node daemon is shutting down"));
          running++;
          return Effect.raceFirst(
            work,
            Effect.map(Deferred.await(cutoff), () =>
              refuse(busy, "the danm node daemon stopped before this request finished")),
          ).pipe(
            Effect.ensuring(Effect.andThen(
              slots.release(1),
              Effect.sync(() =>
                running--
              ),
            )),
          );
        });
      });

    const drain = (timeoutMs: number) =>
      Effect.gen(function* () {
        draining = true;
        yield* Deferred.succeed(closed, undefined);
        const started = running;
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs;
        while (running > 0 && (yield* Clock.currentTimeMillis) < deadline) yield* Effect.sleep("20 millis");
        const cutOff = running;
        yield* Deferred.succeed(cutoff, undefined);
        // The cut-off requests answer as soon as their work is interrupted (a child process is killed first).
        const answered = (yield* Clock.currentTimeMillis) + 5_000;
        while (running > 0 && (yield* Clock.currentTimeMillis) < answered) yield* Effect.sleep("5 millis");
        return { finished: started - cutOff, cutOff };
      });

    return {
      admit,
      drain,
      stats: Effect.sync(() => ({ running, queued, rejected })),
    } satisfies RequestGate;
  });
