// The node daemon's bound on delegate plugins running at once (--cni-max-delegates), and how waiting for one of its
// slots is timed. Every delegate runs in the agent's own container, with its memory charged there — a Go plugin plus,
// for danm IPAM, a fakeipam client (a Deno process) — so a burst of ADDs must not exec one per attachment at once.
//
// Waiting for a slot is the node being busy, not the attachment being slow: it does not count against the
// attachment's own time limit (attachTimeoutMs, 30 s), so a healthy ADD queued behind a burst does not fail. It is
// bounded on its own (delegateWaitTimeoutMs, 60 s per attachment): past that the attachment fails with CNI error 11
// "try again later", naming the load, and the runtime retries the sandbox. Both together stay inside kubelet's
// --runtime-request-timeout (2 min), so an ADD never hangs for ever.
import { Clock, Context, Effect, Semaphore } from "effect";
import { DelegateError, StepError } from "../errors.ts";
import { ErrorCode } from "../protocol.ts";
import { CurrentCniMetrics } from "../metrics.ts";

export interface DelegateSlotsService {
  readonly semaphore: Semaphore.Semaphore;
  readonly limit: number;
  /** Longest total wait for slots of one attachment. */
  readonly waitTimeoutMs: number;
  /** Delegate executions waiting for a slot now. */
  waiting: number;
}

/** The daemon's delegate slots; unbounded when absent (in-process callers without a node daemon). */
export const DelegateSlots = Context.Reference<DelegateSlotsService | undefined>("danm/core/cni/DelegateSlots", {
  defaultValue: () => undefined,
});

export const makeDelegateSlots = (limit: number, waitTimeoutMs: number): DelegateSlotsService => ({
  semaphore: Semaphore.makeUnsafe(Math.max(1, limit)),
  limit: Math.max(1, limit),
  waitTimeoutMs,
  waiting: 0,
});

/** How long one attachment has waited for delegate slots so far (mutable; one per attachment, see attachDeadline). */
interface SlotWaitTally {
  waitedMs: number;
  /** When its current wait began, while it waits. */
  since: number | undefined;
}

const SlotWait = Context.Reference<SlotWaitTally | undefined>("danm/core/cni/SlotWait", {
  defaultValue: () => undefined,
});

const waitedSoFar = (tally: SlotWaitTally, now: number) =>
  tally.waitedMs + (tally.since === undefined ? 0 : now - tally.since);

/**
 * Runs `run` (one delegate execution) in a delegate slot. The wait is counted in the `danm_cni_delegates_waiting`
 * gauge and in the attachment's tally; past the attachment's wait bound it fails with CNI error 11.
 */
export const withDelegateSlot = <A, R>(
  run: Effect.Effect<A, DelegateError, R>,
  what: { readonly plugin: string; readonly command: string },
): Effect.Effect<A, DelegateError, R> =>
  Effect.gen(function* () {
    const slots = yield* DelegateSlots;
    if (slots === undefined) return yield* run;
    const metrics = yield* CurrentCniMetrics;
    const tally = (yield* SlotWait) ?? { waitedMs: 0, since: undefined };
    const began = yield* Clock.currentTimeMillis;
    let waiting = true;
    slots.waiting++;
    metrics?.delegatesWaiting.add(1);
    tally.since = began;
    // Once: when the slot is taken, or when the call ends (interrupted, timed out) still waiting for one.
    const stopWaiting = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        if (!waiting) return;
        waiting = false;
        slots.waiting--;
        metrics?.delegatesWaiting.add(-1);
        tally.waitedMs += now - began;
        tally.since = undefined;
      }));
    const allowedMs = Math.max(0, slots.waitTimeoutMs - tally.waitedMs);
    // Fails only if the slot has not been taken by then; once it has, the delegate's own run decides.
    const waitBound = Effect.andThen(
      Effect.sleep(`${allowedMs} millis`),
      Effect.suspend(() =>
        waiting
          ? Effect.fail(
            new DelegateError({
              ...what,
              code: ErrorCode.tryAgainLater,
              reason: `the node is busy: no delegate slot free within ${slots.waitTimeoutMs} ms ` +
                `(${slots.limit} delegates running, ${slots.waiting} waiting; --cni-max-delegates ${slots.limit})`,
            }),
          )
          : Effect.never
      ),
    );
    return yield* Effect.raceFirst(slots.semaphore.withPermits(1)(Effect.andThen(stopWaiting, run)), waitBound).pipe(
      Effect.ensuring(stopWaiting),
    );
  });

/**
 * The time limit of one attachment during ADD, not counting its waits for delegate slots (withDelegateSlot): fails
 * with a StepError once it has worked `timeoutMs` for itself.
 */
export const attachDeadline =
  (timeoutMs: number) => <A, E, R>(attach: Effect.Effect<A, E, R>): Effect.Effect<A, E | StepError, R> =>
    Effect.gen(function* () {
      const tally: SlotWaitTally = { waitedMs: 0, since: undefined };
      const start = yield* Clock.currentTimeMillis;
      const watchdog = Effect.gen(function* () {
        while (true) {
          const now = yield* Clock.currentTimeMillis;
          const left = timeoutMs - (now - start - waitedSoFar(tally, now));
          if (left <= 0) {
            return yield* new StepError({ operation: "attach", reason: `not done within ${timeoutMs} ms` });
          }
          // Waits for slots in the meantime push the deadline back: look again then.
          yield* Effect.sleep(`${left} millis`);
        }
      });
      return yield* Effect.raceFirst(Effect.provideService(attach, SlotWait, tally), watchdog);
    });
