// Waiting for a condition in tests: one poller for every tier, so that a timeout always names what was awaited and
// the last failure seen.
import { Effect } from "effect";

export interface PollOptions {
  /** How long to wait in all (default 30 s). */
  readonly timeoutMs?: number;
  /** The pause between two probes (default 200 ms). */
  readonly everyMs?: number;
  /** Checked before each probe: a message ends the wait at once (e.g. the process being waited on has exited). */
  readonly abort?: () => string | undefined;
  /** Appended to the timeout's error (e.g. the output of the process being waited on). */
  readonly detail?: () => string;
}

const optionsOf = (o: number | PollOptions | undefined, everyMs?: number): PollOptions =>
  typeof o === "number" ? { timeoutMs: o, everyMs } : o ?? { everyMs };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Probes until `probe` reports done; at the deadline `timedOut` gets the last error the probe threw. */
async function poll<T>(
  what: string,
  probe: () => Promise<{ readonly value: T } | undefined>,
  o: PollOptions,
  timedOut: (last: unknown, timeoutMs: number) => Error,
): Promise<T> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (true) {
    const stop = o.abort?.();
    if (stop !== undefined) throw new Error(`while waiting for ${what}: ${stop}`);
    try {
      const r = await probe();
      if (r) return r.value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw timedOut(last, timeoutMs);
    await sleep(o.everyMs ?? 200);
  }
}

/**
 * Polls `probe` until it yields a value other than `undefined` or `false` (a throw counts as not yet); the error at
 * the deadline names `what` and the last error thrown. A number for `options` is the timeout in ms, and `everyMs`
 * then the pause between probes.
 */
export function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options?: number | PollOptions,
  everyMs?: number,
): Promise<T> {
  const o = optionsOf(options, everyMs);
  return poll(
    what,
    async () => {
      const v = await probe();
      return v === undefined || v === false ? undefined : { value: v as T };
    },
    o,
    (last, timeoutMs) =>
      new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}${
          o.detail ? `\n${o.detail()}` : ""
        }`,
      ),
  );
}

/**
 * Polls `check` (an assertion) until it returns without throwing, and gives its result; at the deadline its last
 * error is rethrown as it is. A number for `options` is the timeout in ms.
 */
export function eventuallySucceeds<A>(check: () => Promise<A>, options?: number | PollOptions): Promise<A> {
  return poll(
    "an assertion",
    async () => ({ value: await check() }),
    optionsOf(options),
    (last) => last instanceof Error ? last : new Error(String(last)),
  );
}

/**
 * The Effect form of eventuallySucceeds, for tests on the in-memory layers: runs `check` until it succeeds (every
 * 10 ms, 5 s at most by default); at the deadline it fails as `check` last did.
 */
export const eventuallyEffect = <A, E, R>(
  check: Effect.Effect<A, E, R>,
  options?: number | PollOptions,
): Effect.Effect<A, E, R> =>
  Effect.gen(function* () {
    const o = optionsOf(options);
    const deadline = Date.now() + (o.timeoutMs ?? 5_000);
    while (true) {
      const r = yield* Effect.exit(check);
      if (r._tag === "Success") return r.value;
      if (Date.now() > deadline) return yield* r;
      yield* Effect.sleep(o.everyMs ?? 10);
    }
  });

/** eventuallyEffect for a condition: polls `holds` until it is true; the failure at the deadline names `what`. */
export const eventuallyHolds = (what: string, holds: Effect.Effect<boolean>, options?: number | PollOptions) =>
  eventuallyEffect(
    Effect.flatMap(holds, (ok) => ok ? Effect.void : Effect.fail(new Error(`timed out waiting for ${what}`))),
    options,
  );
