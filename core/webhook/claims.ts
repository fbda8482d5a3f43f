// Atomic, leak-free VNI claims for TenantNetworks, shared by every webhook replica through the apiserver.
//
// Usage is derived from the networks themselves (no bitmask); what makes an ID unique across concurrent requests
// and replicas is a coordination.k8s.io Lease per (device, vniType, ID), created with create-if-absent:
//
//   name     vni-<type>-<id>-<device slug>-<hash>, in the webhook's claim namespace
//   holder   "<namespace>/<name>/<nonce>": the TenantNetwork and a nonce unique to the admission request; the
//            mutating webhook writes the same nonce into the network's `danm.io/vni-claim` annotation, so the
//            claim's owner is recognisable even when the name is generated or reused after a delete.
//
// A claim is *carried* when a TenantNetwork in the holder's namespace has that nonce and that VNI (checked with a
// fresh read, never the cache). It is *reclaimable* when it is not carried and either the network that carried it
// is being deleted (the validating webhook marks it on DELETE) or it is older than the grace period, which bounds
// how long an admitted request can take to be persisted. Only reclaimable claims are taken over (compare-and-swap
// on the Lease) or deleted (with a resourceVersion precondition):
//   - the network is deleted            → deleted at once by the reconciler (watch event), or taken over by the
//                                          next claim since it is marked
//   - our validating webhook refuses it  → released at once (the object is never persisted)
//   - anything later refuses it          → reclaimed after the grace period (nothing carries it)
// Nothing is ever claimed on dry-run. Claims of one process never try the same ID (pending set), so only replicas
// collide with each other, and a collision costs one AlreadyExists.
import { Clock, Effect, Schema } from "effect";
import { type TenantNetwork, TenantNetworkResource } from "../api/danm.ts";
import { type Lease, LeaseResource } from "../api/k8s.ts";
import { Kube, type KubeError, type KubeService } from "../ports/kube.ts";
import { deviceOf, VniClaimAnnotation } from "./networks.ts";
import { retryTransient } from "./retry.ts";
import { rangeValues, type VniRange, type VniType } from "./vni.ts";

export const ManagedByLabel = "app.kubernetes.io/managed-by";
export const ManagedBy = "danm-webhook";
export const VniTypeLabel = "danm.io/vni-type";
export const VniLabel = "danm.io/vni";
export const DeviceAnnotation = "danm.io/vni-device";
/** Set on a claim when its network is being deleted: it may be taken over as soon as the network is gone. */
export const ReleasedAnnotation = "danm.io/vni-released";

export const claimSelector = `${ManagedByLabel}=${ManagedBy},${VniTypeLabel}`;

export interface DeviceType {
  readonly device: string;
  readonly type: VniType;
}

export interface ClaimKey extends DeviceType {
  readonly id: number;
}

export interface Holder {
  readonly namespace: string;
  /** "" when the name was still to be generated at admission. */
  readonly name: string;
  readonly nonce: string;
}

export class ClaimError extends Schema.TaggedError<ClaimError>()("ClaimError", {
  operation: Schema.String,
  claim: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.operation} VNI claim ${this.claim}: ${this.detail}`;
  }
}

/** FNV-1a, to keep names of devices that differ only in characters the slug drops apart. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

export function claimName(key: ClaimKey): string {
  const slug = key.device.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40) || "dev";
  return `vni-${key.type}-${key.id}-${slug}-${fnv1a(key.device)}`;
}

export const describeClaim = (key: ClaimKey) => `${key.type} ${key.id} on ${key.device}`;

export const formatHolder = (h: Holder): string => `${h.namespace}/${h.name}/${h.nonce}`;

export function parseHolder(s: string | null | undefined): Holder | undefined {
  const parts = (s ?? "").split("/");
  if (parts.length !== 3 || parts[0] === "" || parts[2] === "") return undefined;
  return { namespace: parts[0], name: parts[1], nonce: parts[2] };
}

export const newNonce = (): string => crypto.randomUUID().replaceAll("-", "").slice(0, 16);

/** The VNI a TenantNetwork holds, if any. */
export function vniOf(net: TenantNetwork): ClaimKey | undefined {
  const device = deviceOf(net);
  const o = net.spec.Options ?? {};
  if (device === undefined) return undefined;
  if (o.vlan !== undefined) return { device, type: "vlan", id: o.vlan };
  if (o.vxlan !== undefined) return { device, type: "vxlan", id: o.vxlan };
  return undefined;
}

const sameKey = (a: ClaimKey | undefined, b: ClaimKey) =>
  a !== undefined && a.device === b.device && a.type === b.type && a.id === b.id;

/** The holder a stored (or requested) TenantNetwork presents: its namespace, name and claim annotation. */
export function holderOfNetwork(
  net: TenantNetwork,
  fallback: { namespace?: string; name?: string } = {},
): Holder | undefined {
  const nonce = net.metadata.annotations?.[VniClaimAnnotation];
  if (nonce === undefined) return undefined;
  return {
    namespace: net.metadata.namespace ?? fallback.namespace ?? "",
    name: net.metadata.name ?? fallback.name ?? "",
    nonce,
  };
}

export const carries = (net: TenantNetwork, key: ClaimKey, nonce: string): boolean =>
  net.metadata.annotations?.[VniClaimAnnotation] === nonce && sameKey(vniOf(net), key);

/** RFC 3339 with microseconds, the apiserver's MicroTime. */
const microTime = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export interface ClaimsConfig {
  /** Namespace of the Lease objects (the webhook's own). */
  readonly namespace: string;
  /** How long an unclaimed Lease is kept before anyone may reclaim it; must exceed the admission round trip. */
  readonly graceSeconds: number;
}

export interface ClaimRequest extends DeviceType {
  readonly range: VniRange;
  /** IDs known to be in use (from the network caches): not even tried. */
  readonly inUse: (id: number) => boolean;
  readonly holder: Holder;
}

/**
 * Whether a claim's holder is the network `h` names. The nonce alone is not enough: it is visible in the network's
 * annotations, and a tenant copying it into another network must not borrow (or release) that network's VNI. So
 * the namespace must match, and the name too, except that a claim taken for a generated name (holder name "", the
 * name is not known at mutation) matches any name until the reconciler confirms it (fills in the name).
 */
export function holds(claim: Holder | undefined, h: Holder, exact = false): boolean {
  if (claim === undefined || claim.nonce !== h.nonce || claim.namespace !== h.namespace) return false;
  return claim.name === h.name || (!exact && claim.name === "");
}

export interface Claims {
  /** Claims the lowest free ID of the range; undefined when none is left. */
  readonly claimLowest: (req: ClaimRequest) => Effect.Effect<number | undefined, ClaimError>;
  /**
   * Whether `holder` holds the claim for `key` right now. `exact`: the holder's name must be what the claim was
   * taken for (the mutating webhook recognising its own output), not a name filled in later.
   */
  readonly heldBy: (key: ClaimKey, holder: Holder, exact?: boolean) => Effect.Effect<boolean, ClaimError>;
  /** Deletes the claim if `holder` holds it (the request carrying it was refused, or its network is gone). */
  readonly release: (key: ClaimKey, holder: Holder) => Effect.Effect<boolean, ClaimError>;
  /** Marks the claim of a network being deleted: reclaimable once the network is gone. */
  readonly markReleased: (key: ClaimKey, holder: Holder) => Effect.Effect<void, ClaimError>;
  /** Fills in the network's name once it is stored (a claim taken for a generated name). */
  readonly confirm: (key: ClaimKey, holder: Holder) => Effect.Effect<void, ClaimError>;
  /** Deletes every reclaimable claim; returns the names deleted. */
  readonly sweep: Effect.Effect<ReadonlyArray<string>, ClaimError>;
}

/** What taking and holding claims share: the retrying Kube calls, the pending IDs, the Lease reads and checks. */
function claimsContext(config: ClaimsConfig, raw: KubeService) {
  // Every call on the claim path retries transient failures briefly (see retry.ts).
  const kube = {
    get: ((rt, name, o) => retryTransient(raw.get(rt, name, o))) as typeof raw.get,
    list: ((rt, o) => retryTransient(raw.list(rt, o))) as typeof raw.list,
    create: ((rt, obj, o) => retryTransient(raw.create(rt, obj, o))) as typeof raw.create,
    update: ((rt, obj, o) => retryTransient(raw.update(rt, obj, o))) as typeof raw.update,
    patch: ((rt, name, p, o) => retryTransient(raw.patch(rt, name, p, o))) as typeof raw.patch,
    delete: ((rt, name, o) => retryTransient(raw.delete(rt, name, o))) as typeof raw.delete,
  };
  const ns = config.namespace;

  // IDs this process saw claimed and whose network may not be in the caches yet (its create is in flight):
  // skipped without a request until they expire with the grace period, are released, or are marked. Without
  // it, 50 concurrent claims would each walk over the others' IDs at two requests per ID.
  const pending = new Map<string, number>();
  const pendingKey = (key: ClaimKey) => `${key.type}/${key.device}/${key.id}`;
  const isPending = (key: ClaimKey, now: number) => {
    const until = pending.get(pendingKey(key));
    if (until === undefined) return false;
    if (until > now) return true;
    pending.delete(pendingKey(key));
    return false;
  };
  const remember = (key: ClaimKey, now: number) => pending.set(pendingKey(key), now + config.graceSeconds * 1000);
  const forget = (key: ClaimKey) => pending.delete(pendingKey(key));

  const err = (operation: string, key: ClaimKey) => (e: KubeError) =>
    new ClaimError({ operation, claim: `${describeClaim(key)} (Lease ${ns}/${claimName(key)})`, detail: e.message });

  const getLease = (key: ClaimKey) =>
    kube.get(LeaseResource, claimName(key), { namespace: ns }).pipe(
      Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
    );

  /** Fresh: is there a TenantNetwork carrying this claim? */
  const carried = (holder: Holder, key: ClaimKey): Effect.Effect<boolean, KubeError> =>
    holder.name !== ""
      ? kube.get(TenantNetworkResource, holder.name, { namespace: holder.namespace }).pipe(
        Effect.map((net) => carries(net, key, holder.nonce)),
        Effect.catchTag("KubeNotFound", () => Effect.succeed(false)),
      )
      : Effect.map(
        kube.list(TenantNetworkResource, { namespace: holder.namespace }),
        (l) => l.items.some((net) => carries(net, key, holder.nonce)),
      );

  const reclaimable = (lease: Lease, key: ClaimKey): Effect.Effect<boolean, KubeError> =>
    Effect.gen(function* () {
      const holder = parseHolder(lease.spec?.holderIdentity);
      if (holder === undefined) return true; // not one of ours in a usable shape: nobody can carry it
      const now = yield* Clock.currentTimeMillis;
      const since = Date.parse(lease.spec?.acquireTime ?? lease.metadata.creationTimestamp ?? "");
      const marked = lease.metadata.annotations?.[ReleasedAnnotation] !== undefined;
      const old = Number.isNaN(since) || now - since > config.graceSeconds * 1000;
      if (!marked && !old) return false;
      return !(yield* carried(holder, key));
    });

  const leaseFor = (key: ClaimKey, holder: Holder, nowMs: number, base?: Lease): Lease => ({
    metadata: {
      ...(base?.metadata ?? {}),
      name: claimName(key),
      namespace: ns,
      labels: {
        ...base?.metadata.labels,
        [ManagedByLabel]: ManagedBy,
        [VniTypeLabel]: key.type,
        [VniLabel]: `${key.id}`,
      },
      annotations: Object.fromEntries(
        Object.entries({ ...base?.metadata.annotations, [DeviceAnnotation]: key.device })
          .filter(([k]) => k !== ReleasedAnnotation),
      ),
    },
    spec: {
      holderIdentity: formatHolder(holder),
      leaseDurationSeconds: config.graceSeconds,
      acquireTime: microTime(nowMs),
      renewTime: microTime(nowMs),
      leaseTransitions: (base?.spec?.leaseTransitions ?? -1) + 1,
    },
  });

  return { kube, ns, isPending, remember, forget, err, getLease, reclaimable, leaseFor };
}

type ClaimsContext = ReturnType<typeof claimsContext>;

/** Taking the lowest free ID of a range: create its Lease, or take over a reclaimable one. */
function taking(
  { kube, isPending, remember, forget, err, getLease, reclaimable, leaseFor }: ClaimsContext,
): Pick<Claims, "claimLowest"> {
  /** One attempt at one ID: true when it is ours now. */
  const tryClaim = (key: ClaimKey, holder: Holder): Effect.Effect<boolean, KubeError> =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis;
      const created = yield* kube.create(LeaseResource, leaseFor(key, holder, now)).pipe(
        Effect.as(true),
        Effect.catchTag("KubeAlreadyExists", () => Effect.succeed(false)),
      );
      if (created) return true;
      const won = yield* contended(key, holder, now);
      // Held by someone else and not reclaimable: most likely a create in flight elsewhere.
      if (!won) remember(key, now);
      return won;
    });

  /**
   * The Lease exists: ours if it is reclaimable and our takeover wins. A Lease that changes or goes under us (the
   * reconciler deleting the claim of a network that was just deleted) is looked at again, a few times at most:
   * giving up there would skip a free ID.
   */
  const contended = (key: ClaimKey, holder: Holder, now: number, round = 1): Effect.Effect<boolean, KubeError> =>
    Effect.gen(function* () {
      const lease = yield* getLease(key);
      if (lease === undefined) {
        // Deleted between our create and get (a sweep): one more create decides.
        return yield* kube.create(LeaseResource, leaseFor(key, holder, now)).pipe(
          Effect.as(true),
          Effect.catchTag("KubeAlreadyExists", () => Effect.succeed(false)),
        );
      }
      if (parseHolder(lease.spec?.holderIdentity)?.nonce === holder.nonce) return true; // our own retry
      if (!(yield* reclaimable(lease, key))) return false;
      const again = () => (round < 3 ? contended(key, holder, now, round + 1) : Effect.succeed(false));
      return yield* kube.update(LeaseResource, leaseFor(key, holder, now, lease)).pipe(
        Effect.as(true),
        Effect.catchTags({ KubeConflict: again, KubeNotFound: again }),
      );
    });

  /**
   * Claims run concurrently: the next ID is picked and marked pending without yielding (one JS thread), so two
   * claims of this process never try the same ID; replicas only meet at the Lease create.
   */
  const claimLowest: Claims["claimLowest"] = (req) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis;
      const keyOf = (id: number): ClaimKey => ({ device: req.device, type: req.type, id });
      const tried = new Set<number>();
      const attempt = (id: number) => {
        const key = keyOf(id);
        tried.add(id);
        remember(key, now);
        return tryClaim(key, req.holder).pipe(
          Effect.mapError(err("taking", key)),
          Effect.tapError(() => Effect.sync(() => forget(key))),
        );
      };
      const next = (usePending: boolean) => {
        for (const id of rangeValues(req.range)) {
          if (req.inUse(id) || tried.has(id)) continue;
          if (isPending(keyOf(id), now) !== usePending) continue;
          return id;
        }
        return undefined;
      };
      for (let id = next(false); id !== undefined; id = next(false)) {
        if (yield* attempt(id)) return id;
      }
      // Everything is taken or pending: pending IDs may have become reclaimable, look at them once.
      for (let id = next(true); id !== undefined; id = next(true)) {
        if (yield* attempt(id)) return id;
      }
      return undefined;
    });

  return { claimLowest };
}

/** Claims held: who holds one, releasing, confirming and marking it, and sweeping the reclaimable ones. */
function holding(
  { kube, ns, forget, err, getLease, reclaimable }: ClaimsContext,
): Omit<Claims, "claimLowest"> {
  const holderOf = (lease: Lease | undefined) => parseHolder(lease?.spec?.holderIdentity);

  const heldBy: Claims["heldBy"] = (key, holder, exact = false) =>
    getLease(key).pipe(
      Effect.map((l) => holds(holderOf(l), holder, exact)),
      Effect.mapError(err("reading", key)),
    );

  const deleteLease = (lease: Lease) =>
    kube.delete(LeaseResource, lease.metadata.name ?? "", {
      namespace: ns,
      ...(lease.metadata.resourceVersion ? { preconditions: { resourceVersion: lease.metadata.resourceVersion } } : {}),
    }).pipe(
      Effect.as(true),
      Effect.catchTags({ KubeNotFound: () => Effect.succeed(false), KubeConflict: () => Effect.succeed(false) }),
    );

  const release: Claims["release"] = (key, holder) =>
    Effect.gen(function* () {
      const lease = yield* getLease(key);
      if (lease === undefined || !holds(holderOf(lease), holder)) return false;
      forget(key);
      return yield* deleteLease(lease);
    }).pipe(Effect.mapError(err("releasing", key)));

  const confirm: Claims["confirm"] = (key, holder) =>
    Effect.gen(function* () {
      const lease = yield* getLease(key);
      const current = holderOf(lease);
      if (lease === undefined || current === undefined || current.name !== "" || !holds(current, holder)) return;
      // A compare-and-swap update (resourceVersion): a concurrent takeover wins.
      yield* kube.update(LeaseResource, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: formatHolder(holder) },
      }).pipe(Effect.catchTags({ KubeConflict: () => Effect.void, KubeNotFound: () => Effect.void }));
    }).pipe(Effect.mapError(err("confirming", key)));

  const markReleased: Claims["markReleased"] = (key, holder) =>
    Effect.gen(function* () {
      const lease = yield* getLease(key);
      if (lease === undefined || !holds(holderOf(lease), holder)) return;
      forget(key);
      const now = yield* Clock.currentTimeMillis;
      // The resourceVersion makes the patch a compare-and-swap: a takeover in between wins.
      yield* kube.patch(LeaseResource, claimName(key), {
        type: "merge",
        patch: {
          metadata: {
            resourceVersion: lease.metadata.resourceVersion,
            annotations: { [ReleasedAnnotation]: microTime(now) },
          },
        },
      }, { namespace: ns }).pipe(
        Effect.catchTags({ KubeConflict: () => Effect.void, KubeNotFound: () => Effect.void }),
      );
    }).pipe(Effect.mapError(err("marking", key)));

  const keyOf = (lease: Lease): ClaimKey | undefined => {
    const type = lease.metadata.labels?.[VniTypeLabel];
    const id = Number(lease.metadata.labels?.[VniLabel]);
    const device = lease.metadata.annotations?.[DeviceAnnotation];
    if ((type !== "vlan" && type !== "vxlan") || !Number.isInteger(id) || device === undefined) return undefined;
    return { device, type, id };
  };

  const sweep: Claims["sweep"] = Effect.gen(function* () {
    const leases = yield* kube.list(LeaseResource, { namespace: ns, labelSelector: claimSelector });
    const deleted: string[] = [];
    for (const lease of leases.items) {
      const key = keyOf(lease);
      if (key === undefined) continue;
      if ((yield* reclaimable(lease, key)) && (yield* deleteLease(lease))) {
        forget(key);
        deleted.push(lease.metadata.name ?? "");
      }
    }
    return deleted;
  }).pipe(
    Effect.mapError((e: KubeError) =>
      new ClaimError({ operation: "sweeping", claim: `Leases in ${ns}`, detail: e.message })
    ),
  );

  return { heldBy, release, markReleased, confirm, sweep };
}

export const makeClaims = (config: ClaimsConfig): Effect.Effect<Claims, never, Kube> =>
  Effect.map(Kube, (raw) => {
    const context = claimsContext(config, raw);
    return { ...taking(context), ...holding(context) } satisfies Claims;
  });
