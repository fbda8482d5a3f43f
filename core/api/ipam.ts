// IPBlock: where danm's IPAM keeps reservations, instead of DANM's bitmask inside the network object.
//
// A network's address space is cut into aligned blocks (64 addresses by default); a block object exists
// only once something in it is reserved. Every reservation names its owner (pod UID, sandbox, interface),
// so it is usable by a retried ADD and reclaimable when the owner is gone. Writes are compare-and-swap on
// the block's resourceVersion; blocks are created with a deterministic name, so two creators cannot both win.
import { Effect, Option, Schema, SchemaIssue, SchemaTransformation } from "effect";
import { formatReservations, isPacked, parseReservations } from "./ipam_text.ts";
import { ObjectMeta } from "./meta.ts";
import type { ResourceType } from "../ports/kube.ts";

export const NetworkKind = Schema.Literals(["DanmNet", "TenantNetwork", "ClusterNetwork"]);
export type NetworkKind = typeof NetworkKind.Type;

export const NetworkRef = Schema.Struct({
  kind: NetworkKind,
  namespace: Schema.optionalKey(Schema.String),
  name: Schema.String,
  uid: Schema.String,
});
export type NetworkRef = typeof NetworkRef.Type;

/** The fields of a reservation. */
export const ReservationFields = Schema.Struct({
  /** "<namespace>/<pod name>" */
  pod: Schema.String,
  podUid: Schema.String,
  /** CNI_CONTAINERID of the sandbox the address was reserved for. */
  sandbox: Schema.String,
  /** Interface name inside the pod. */
  iface: Schema.String,
  node: Schema.String,
  /** True when the pod asked for this exact address. */
  static: Schema.optionalKey(Schema.Boolean),
  /** RFC 3339 time of reservation; the reclaimer leaves very young reservations alone. */
  since: Schema.String,
});

/** A reservation as the IPAM works with it (stored as one line of its block's text: see ipam_text.ts). */
export type Reservation = typeof ReservationFields.Type;

type ReservationMap = Readonly<Record<string, typeof ReservationFields.Type>>;

const isReservation = (u: unknown): u is typeof ReservationFields.Type => {
  if (typeof u !== "object" || u === null) return false;
  if (isPacked(u)) return true;
  const r = u as Record<string, unknown>;
  return typeof r.pod === "string" && typeof r.podUid === "string" && typeof r.sandbox === "string" &&
    typeof r.iface === "string" && typeof r.node === "string" && typeof r.since === "string" &&
    (r.static === undefined || typeof r.static === "boolean");
};

/**
 * The decoded map, checked by a guard instead of a Schema walk of every entry: the text is parsed strictly on
 * decode and every line is checked on encode, so the walk checked nothing more — and it was most of the Schema work
 * of an IPAM block write (up to 64 structs, per write, on both sides).
 */
const ReservationMap = Schema.declare(
  (u: unknown): u is ReservationMap =>
    typeof u === "object" && u !== null && !Array.isArray(u) && Object.values(u).every(isReservation),
  { identifier: "ReservationMap" },
);

/** All reservations of a block as stored: one text, a line per reserved offset (formats: ipam_text.ts). */
export const Reservations = Schema.String.annotate({
  description:
    "one line per reserved offset, in offset order, after a first line `#v3 …`: `<offset> <namespace>/<pod> " +
    "<pod uid> <sandbox> <interface> <node> <since>[ static]` — pod uid: a UUID's 16 bytes in base64url, sandbox: " +
    "hex as its bytes in base64url, since: YYYYMMDDThhmmssZ (UTC), each else `!` and the value as is; namespace, " +
    "interface, node, since: `=` when as on the line above. Read too: texts without the first line (older danm), a " +
    "line `<offset> <namespace>/<pod> <pod uid> <sandbox> <interface> <node> <since RFC 3339>[ static]` each. " +
    "`danmctl showalloc <network> -o json` shows them decoded.",
}).pipe(Schema.decodeTo(
  ReservationMap,
  SchemaTransformation.transformEffect<ReservationMap, string>({
    decode: (text, options) => {
      const map = parseReservations(text);
      return typeof map === "string"
        ? Effect.fail(new SchemaIssue.InvalidValue({ message: map }, Option.some(text), options))
        : Effect.succeed(map);
    },
    encode: (map, options) => {
      const text = formatReservations(map);
      return typeof text === "string"
        ? Effect.succeed(text)
        : Effect.fail(new SchemaIssue.InvalidValue({ message: text.problem }, Option.some(map), options));
    },
  }),
));

export const IPBlockSpec = Schema.Struct({
  network: NetworkRef,
  family: Schema.Literals(["IPv4", "IPv6"]),
  /** The block's own address range, e.g. "10.0.0.64/26". */
  cidr: Schema.String,
  /** Node whose allocator opened the block; others use it only when the pool has no other room. */
  node: Schema.optionalKey(Schema.String),
  /**
   * Offset inside the block (decimal string) → owner. Stored as one text, a line per offset in offset order
   * (ipam_text.ts): a third less apiserver CPU per block write than a map of 64 strings (measured with real-sized
   * pod UIDs and sandbox IDs), fewer bytes again in its v3 form, and still readable in `kubectl get ipb -o yaml`.
   */
  reservations: Reservations,
});
export type IPBlockSpec = typeof IPBlockSpec.Type;

export const IPBlock = Schema.Struct({
  apiVersion: Schema.optionalKey(Schema.String),
  kind: Schema.optionalKey(Schema.String),
  metadata: ObjectMeta,
  spec: IPBlockSpec,
});
export type IPBlock = typeof IPBlock.Type;

export const ipBlockResource: ResourceType<IPBlock, typeof IPBlock.Encoded> = {
  group: "danm.io",
  version: "v1",
  kind: "IPBlock",
  plural: "ipblocks",
  namespaced: false,
  schema: IPBlock,
};

export const labels = {
  networkUid: "danm.io/network-uid",
  networkKind: "danm.io/network-kind",
  networkName: "danm.io/network-name",
  networkNamespace: "danm.io/network-namespace",
  family: "danm.io/family",
} as const;
