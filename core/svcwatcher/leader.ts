// Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules (leaderelection.go):
//   * a candidate takes the lease when it is free, or when its record has not changed for leaseDuration as seen
//     by the candidate's own clock (observed time, so clock skew between replicas does not matter);
//   * the leader renews every retryPeriod; when it has not managed to for renewDeadline (< leaseDuration), or
//     sees another holder, it stops leading before anyone else can have taken over;
//   * on shutdown the leader gives the lease up (holder "", duration 1 s) so the next replica need not wait.
// Unlike DANM's svcwatcher (spec §1.4), losing the lease is not fatal: the work stops, the replica campaigns
// again.
import { Clock, Effect, Exit } from "effect";
import { type Lease, LeaseResource } from "../api/k8s.ts";
import { Kube, type KubeService } from "../ports/kube.ts";
import { canonical } from "./model.ts";

export interface LeaderElectionOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  /** How long a lease nobody renews is respected by others. Default 15 s. */
  readonly leaseDurationMs?: number;
  /** How long a leader keeps leading while its renewals fail. Default 10 s. */
  readonly renewDeadlineMs?: number;
  /** Interval between attempts (to acquire, or to renew). Default 2 s. */
  readonly retryPeriodMs?: number;
  /** Give the lease up when interrupted. Default true; tests turn it off to simulate a crash. */
  readonly releaseOnCancel?: boolean;
  /** Told when this replica starts (true) and stops (false) leading. */
  readonly onLeading?: (leading: boolean) => Effect.Effect<void>;
}

type LeaseSpec = NonNullable<Lease["spec"]>;

/** MicroTime: RFC 3339 with exactly six fractional digits (the apiserver refuses three). */
export const microTime = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

interface Elector {
  /** True when this replica holds the lease afterwards. */
  readonly tryAcquireOrRenew: Effect.Effect<boolean>;
  /** Another replica holds an unexpired lease, as last observed. */
  readonly heldByOther: Effect.Effect<boolean>;
  readonly release: Effect.Effect<void>;
}

const makeElector = (kube: KubeService, o: Required<Omit<LeaderElectionOptions, "onLeading">>): Elector => {
  let observed: LeaseSpec | undefined;
  let observedAt = 0;
  const where = `Lease ${o.namespace}/${o.name}`;
  const durationSeconds = Math.max(1, Math.round(o.leaseDurationMs / 1000));

  const observe = (spec: LeaseSpec, now: number) => {
    if (observed === undefined || canonical(observed) !== canonical(spec)) {
      observed = spec;
      observedAt = now;
    }
  };
  const expiredAt = (now: number) => {
    const holder = observed?.holderIdentity ?? "";
    if (holder === "" || holder === o.identity) return true;
    const ms = (observed?.leaseDurationSeconds ?? durationSeconds) * 1000;
    return observedAt + ms <= now;
  };

  const tryAcquireOrRenew = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis;
    const current = yield* Effect.result(kube.get(LeaseResource, o.name, { namespace: o.namespace }));
    if (current._tag === "Failure") {
      if (current.failure._tag !== "KubeNotFound") {
        yield* Effect.logWarning(`leader election: reading ${where}: ${current.failure.message}`);
        return false;
      }
      const spec: LeaseSpec = {
        holderIdentity: o.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: microTime(now),
        renewTime: microTime(now),
        leaseTransitions: 0,
      };
      const created = yield* Effect.result(
        kube.create(LeaseResource, { metadata: { name: o.name, namespace: o.namespace }, spec }),
      );
      if (created._tag === "Failure") return false; // someone else created it first
      observe(spec, now);
      return true;
    }
    const lease = current.success;
    const spec: LeaseSpec = lease.spec ?? {};
    observe(spec, now);
    const holder = spec.holderIdentity ?? "";
    if (!expiredAt(now)) return false;
    const mine = holder === o.identity;
    const next: LeaseSpec = {
      holderIdentity: o.identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
    };
    const updated = yield* Effect.result(kube.update(LeaseResource, { ...lease, spec: next }));
    if (updated._tag === "Failure") {
      if (updated.failure._tag !== "KubeConflict") {
        yield* Effect.logWarning(`leader election: updating ${where}: ${updated.failure.message}`);
      }
      return false;
    }
    observe(next, now);
    return true;
  });

  const release = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis;
    const lease = yield* kube.get(LeaseResource, o.name, { namespace: o.namespace });
    if ((lease.spec?.holderIdentity ?? "") !== o.identity) return;
    yield* kube.update(LeaseResource, {
      ...lease,
      spec: {
        holderIdentity: "",
        leaseDurationSeconds: 1,
        acquireTime: microTime(now),
        renewTime: microTime(now),
        leaseTransitions: lease.spec?.leaseTransitions ?? 0,
      },
    });
  }).pipe(
    Effect.timeout(o.renewDeadlineMs),
    Effect.catch((e) => Effect.logWarning(`leader election: releasing ${where}: ${e.message}`)),
  );

  const heldByOther = Effect.map(Clock.currentTimeMillis, (now) => !expiredAt(now));
  return { tryAcquireOrRenew, heldByOther, release };
};

/**
 * Runs `lead` while this replica holds the lease, forever: campaigns, leads until the lease is lost (then `lead`
 * is interrupted), campaigns again. If `lead` ends on its own (it failed), the lease is given up and the replica
 * campaigns again after a retry period. Interrupting the whole effect stops `lead` first, then releases the lease.
 */
export const runLeaderElected = <E, R>(
  options: LeaderElectionOptions,
  lead: Effect.Effect<unknown, E, R>,
): Effect.Effect<never, never, Kube | R> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const o = {
      namespace: options.namespace,
      name: options.name,
      identity: options.identity,
      leaseDurationMs: options.leaseDurationMs ?? 15_000,
      renewDeadlineMs: options.renewDeadlineMs ?? 10_000,
      retryPeriodMs: options.retryPeriodMs ?? 2_000,
      releaseOnCancel: options.releaseOnCancel ?? true,
    };
    const onLeading = options.onLeading ?? (() => Effect.void);
    const elector = makeElector(kube, o);
    const jittered = Effect.suspend(() => Effect.sleep(o.retryPeriodMs * (1 + Math.random() * 0.2)));

    const acquire = Effect.gen(function* () {
      while (!(yield* elector.tryAcquireOrRenew)) yield* jittered;
    });

    /** Returns when leadership is lost. */
    const renew = Effect.gen(function* () {
      let lastRenew = yield* Clock.currentTimeMillis;
      while (true) {
        yield* Effect.sleep(o.retryPeriodMs);
        const left = Math.max(1, o.renewDeadlineMs - ((yield* Clock.currentTimeMillis) - lastRenew));
        const ok = yield* elector.tryAcquireOrRenew.pipe(Effect.timeoutOrElse({
          duration: left,
          orElse: () => Effect.succeed(false),
        }));
        const now = yield* Clock.currentTimeMillis;
        if (ok) {
          lastRenew = now;
          continue;
        }
        if (yield* elector.heldByOther) return "taken over by another replica";
        if (now - lastRenew >= o.renewDeadlineMs) return `not renewed for ${o.renewDeadlineMs} ms`;
      }
    });

    const term = Effect.gen(function* () {
      yield* acquire;
      yield* Effect.logInfo(`leader election: ${o.identity} now leads (Lease ${o.namespace}/${o.name})`);
      yield* onLeading(true);
      const outcome = yield* Effect.raceFirst(
        Effect.exit(lead).pipe(Effect.map((exit) => ({ _tag: "LeadEnded" as const, exit }))),
        Effect.map(renew, (reason) => ({ _tag: "Lost" as const, reason })),
      ).pipe(
        // Interrupted (shutdown): `lead` is already stopped by the race; hand the lease over.
        Effect.onInterrupt(() => Effect.andThen(onLeading(false), o.releaseOnCancel ? elector.release : Effect.void)),
      );
      yield* onLeading(false);
      if (outcome._tag === "Lost") {
        yield* Effect.logWarning(`leader election: ${o.identity} lost the lease: ${outcome.reason}`);
        return;
      }
      const why = Exit.isFailure(outcome.exit) ? `failed: ${outcome.exit.cause}` : "ended";
      yield* Effect.logError(`leader election: the leading work of ${o.identity} ${why}; giving the lease up`);
      yield* elector.release;
      yield* Effect.sleep(o.retryPeriodMs);
    });
    return yield* Effect.forever(term);
  });
