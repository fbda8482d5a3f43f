// IPBlock: where danm's IPAM keeps reservations, instead of DANM's bitmask inside the network object.
//
// A network's address space is cut into aligned blocks (64 addresses by default); a block object exists
// only once something in it is reserved. Every reservation names its owner (pod UID, sandbox, interface),
// so it is usable by a retried ADD and reclaimable when the owner is gone. Writes are compare-and-swap on
// the block's resourceVersion; blocks are created with a deterministic name, so two creators cannot both win.
import { Effect, Option, Schema, SchemaIssue, SchemaTransformation } from "effect";
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

/** A reservation as the IPAM works with it. */
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

const reservationKeys = ["uid", "sandbox", "iface", "node", "since"] as const;
const plainToken = /^[^\s=]+$/;
const lineShape = "<namespace>/<pod> <pod uid> <sandbox> <interface> <node> <since>[ static]";

/**
 * The first stored form, `<namespace>/<pod> uid=… sandbox=… iface=… node=… since=…[ static]`: still read, no longer
 * written (the field names were an eighth of every block write's bytes).
 */
function parseKeyedLine(pod: string, rest: ReadonlyArray<string>): typeof ReservationFields.Type | string {
  const fields = new Map<string, string>();
  let isStatic = false;
  for (const token of rest) {
    if (token === "static") isStatic = true;
    else {
      const eq = token.indexOf("=");
      if (eq > 0) fields.set(token.slice(0, eq), token.slice(eq + 1));
    }
  }
  const missing = reservationKeys.filter((k) => !fields.get(k));
  if (missing.length > 0) return `not a reservation ("${lineShape}"; missing ${missing.join(", ")})`;
  return {
    pod,
    podUid: fields.get("uid")!,
    sandbox: fields.get("sandbox")!,
    iface: fields.get("iface")!,
    node: fields.get("node")!,
    since: fields.get("since")!,
    ...(isStatic ? { static: true } : {}),
  };
}

/** One stored line → its fields, or what is wrong with it. */
function parseReservationLine(line: string): typeof ReservationFields.Type | string {
  const tokens = line.split(" ");
  const [pod, ...rest] = tokens;
  if (!pod?.includes("/")) return `not a reservation ("${lineShape}": no <namespace>/<pod> first)`;
  if (rest[0]?.startsWith("uid=")) return parseKeyedLine(pod, rest);
  const [podUid, sandbox, iface, node, since, flag] = rest;
  const fields = [podUid, sandbox, iface, node, since];
  if (fields.some((f) => !f) || rest.length > 6 || (flag !== undefined && flag !== "static")) {
    return `not a reservation ("${lineShape}": ${rest.length + 1} fields)`;
  }
  return { pod, podUid, sandbox, iface, node, since, ...(flag === "static" ? { static: true } : {}) };
}

/** Fields → one stored line, or why they cannot be stored. */
function formatReservationLine(r: typeof ReservationFields.Type): string | { readonly problem: string } {
  const values = [r.pod, r.podUid, r.sandbox, r.iface, r.node, r.since];
  if (values.some((v) => !plainToken.test(v))) return { problem: "reservation fields must not contain spaces or '='" };
  return `${values.join(" ")}${r.static ? " static" : ""}`;
}

/**
 * A reservation as stored: one line, `<namespace>/<pod> <pod uid> <sandbox> <interface> <node> <since>[ static]`
 * (positional: a block write carries up to 64 of them). Still readable in `kubectl get ipb -o yaml`; lines of the
 * first form (`uid=… sandbox=…`) are read too.
 */
export const Reservation = Schema.String.pipe(Schema.decodeTo(
  ReservationFields,
  SchemaTransformation.transformEffect<typeof ReservationFields.Type, string>({
    decode: (line, options) => {
      const r = parseReservationLine(line);
      return typeof r === "string"
        ? Effect.fail(new SchemaIssue.InvalidValue({ message: r }, Option.some(line), options))
        : Effect.succeed(r);
    },
    encode: (r, options) => {
      const line = formatReservationLine(r);
      return typeof line === "string"
        ? Effect.succeed(line)
        : Effect.fail(new SchemaIssue.InvalidValue({ message: line.problem }, Option.some(r), options));
    },
  }),
));
export type Reservation = typeof Reservation.Type;

type ReservationMap = Readonly<Record<string, typeof ReservationFields.Type>>;

/**
 * Stored lines by reservation object. A block write re-encodes its up to 64 reservations of which one changed;
 * the IPAM never changes a reservation object (it puts a new one under the offset), so a line, once formatted,
 * stays right for its object. Checked reservations likewise.
 */
const storedLines = new WeakMap<object, string>();

const isReservation = (u: unknown): u is typeof ReservationFields.Type => {
  if (typeof u !== "object" || u === null) return false;
  if (storedLines.has(u)) return true;
  const r = u as Record<string, unknown>;
  return typeof r.pod === "string" && typeof r.podUid === "string" && typeof r.sandbox === "string" &&
    typeof r.iface === "string" && typeof r.node === "string" && typeof r.since === "string" &&
    (r.static === undefined || typeof r.static === "boolean");
};

/** formatReservationLine, remembered per reservation object (see storedLines). */
function storedLine(r: typeof ReservationFields.Type): string | { readonly problem: string } {
  const known = storedLines.get(r);
  if (known !== undefined) return known;
  const line = formatReservationLine(r);
  if (typeof line === "string") storedLines.set(r, line);
  return line;
}

/**
 * The decoded map, checked by a guard instead of a Schema walk of every entry: the text is parsed strictly on
 * decode and every line is checked on encode (formatReservationLine), so the walk checked nothing more — and
 * it was most of the Schema work of an IPAM block write (up to 64 structs, per write, on both sides).
 */
const ReservationMap = Schema.declare(
  (u: unknown): u is ReservationMap =>
    typeof u === "object" && u !== null && !Array.isArray(u) && Object.values(u).every(isReservation),
  { identifier: "ReservationMap" },
);

/** All reservations of a block as stored: one text, a line `<offset> <reservation line>` each. */
export const Reservations = Schema.String.pipe(Schema.decodeTo(
  ReservationMap,
  SchemaTransformation.transformEffect<ReservationMap, string>({
    decode: (text, options) => {
      const out: Record<string, typeof ReservationFields.Type> = {};
      for (const line of text.split("\n")) {
        if (line.trim() === "") continue;
        const sp = line.indexOf(" ");
        const offset = sp > 0 ? line.slice(0, sp) : "";
        const r = /^\d+$/.test(offset) ? parseReservationLine(line.slice(sp + 1)) : "expected `<offset> <reservation>`";
        if (typeof r === "string" || offset in out) {
          return Effect.fail(
            new SchemaIssue.InvalidValue(
              { message: typeof r === "string" ? `line "${line}": ${r}` : `offset ${offset} appears twice` },
              Option.some(text),
              options,
            ),
          );
        }
        out[String(Number(offset))] = r;
      }
      return Effect.succeed(out);
    },
    encode: (map, options) => {
      const lines: string[] = [];
      for (const offset of Object.keys(map).sort((a, b) => Number(a) - Number(b))) {
        const line = /^\d+$/.test(offset) ? storedLine(map[offset]) : { problem: "offsets are decimal" };
        if (typeof line !== "string") {
          return Effect.fail(
            new SchemaIssue.InvalidValue({ message: `offset ${offset}: ${line.problem}` }, Option.some(map), options),
          );
        }
        lines.push(`${offset} ${line}`);
      }
      return Effect.succeed(lines.join("\n"));
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
   * Offset inside the block (decimal string) → owner. Stored as one text, a line `<offset> <reservation>` each
   * (see Reservation), ordered by offset: a third less apiserver CPU per block write than a map of 64 strings
   * (measured with real-sized pod UIDs and sandbox IDs), and still readable in `kubectl get ipb -o yaml`.
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
