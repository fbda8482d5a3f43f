// How an IPBlock's reservations are stored: one text, a line per reserved offset. Every block write carries the whole
// text (up to 64 lines) and the apiserver decodes it on each write, on the update's re-read and in each watch event,
// so its bytes are the apiserver's cost per allocation. Three forms:
//
//   v1 (read only)  <offset> <ns>/<pod> uid=<uid> sandbox=<id> iface=<if> node=<node> since=<RFC 3339>[ static]
//   v2 (read only)  <offset> <ns>/<pod> <uid> <sandbox> <iface> <node> <since RFC 3339>[ static]
//   v3 (written)    a first line `#v3 …`, then
//                   <offset> <ns>/<pod> <uid> <sandbox> <iface> <node> <since>[ static]
//     uid      a lowercase UUID as its 16 bytes in base64url (22 characters), anything else `!` + as is
//     sandbox  lowercase hex of even length as its bytes in base64url (a 64-hex ID: 43), anything else `!` + as is
//     since    `YYYYMMDDThhmmssZ` (ISO 8601 basic) for a whole-second UTC time, anything else `!` + as is
//     namespace, iface, node, since: `=` when the same as on the line above (values never contain `=`)
//   A third fewer bytes than v2 (with real-sized IDs ~110 bytes a line against ~180), every value read back exactly.
import type { ReservationFields } from "./ipam.ts";

type Fields = typeof ReservationFields.Type;
type ReservationMap = Readonly<Record<string, Fields>>;

export const v3Header = "#v3 (kubectl explain ipblocks.spec.reservations)";
const plainToken = /^[^\s=]+$/;
const lineShape = "<namespace>/<pod> <pod uid> <sandbox> <interface> <node> <since>[ static]";
const uuidShape = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const hexShape = /^(?:[0-9a-f]{2})+$/;
const basicTime = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const extendedTime = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;
const base64url = /^[A-Za-z0-9_-]+$/;
const b64 = { alphabet: "base64url", omitPadding: true } as const;

// --- one value -------------------------------------------------------------------------------------------------

const packUid = (uid: string) =>
  uuidShape.test(uid) ? Uint8Array.fromHex(uid.replaceAll("-", "")).toBase64(b64) : `!${uid}`;
const packSandbox = (id: string) => hexShape.test(id) ? Uint8Array.fromHex(id).toBase64(b64) : `!${id}`;
const packSince = (since: string) => {
  const m = extendedTime.exec(since);
  return m ? `${m[1]}${m[2]}${m[3]}T${m[4]}${m[5]}${m[6]}Z` : `!${since}`;
};

/** base64url → lowercase hex, or undefined when the token is not base64url of `bytes` bytes (any, if undefined). */
const unpackHex = (token: string, bytes?: number): string | undefined => {
  if (!base64url.test(token)) return undefined;
  try {
    const raw = Uint8Array.fromBase64(token, { alphabet: "base64url" });
    return bytes === undefined || raw.length === bytes ? raw.toHex() : undefined;
  } catch {
    return undefined;
  }
};
const unpackUid = (token: string) => {
  if (token.startsWith("!")) return token.slice(1);
  const h = unpackHex(token, 16);
  return h && `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};
const unpackSandbox = (token: string) => token.startsWith("!") ? token.slice(1) : unpackHex(token);
const unpackSince = (token: string) => {
  if (token.startsWith("!")) return token.slice(1);
  const m = basicTime.exec(token);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z` : undefined;
};

// --- one reservation ---------------------------------------------------------------------------------------------

/** A reservation's v3 tokens before the ditto marks: namespace, pod, uid, sandbox, iface, node, since, static. */
type Packed = readonly [string, string, string, string, string, string, string, boolean];

/**
 * Packed tokens per reservation object. A block write re-encodes its up to 64 reservations of which few changed; the
 * IPAM never changes a reservation object (it puts a new one under the offset), so the tokens, once made, stay right
 * for their object.
 */
const packedOf = new WeakMap<object, Packed>();

function pack(r: Fields): Packed | { readonly problem: string } {
  const known = packedOf.get(r);
  if (known !== undefined) return known;
  const values = [r.pod, r.podUid, r.sandbox, r.iface, r.node, r.since];
  if (values.some((v) => !plainToken.test(v))) return { problem: "reservation fields must not contain spaces or '='" };
  const slash = r.pod.indexOf("/");
  if (slash <= 0 || slash === r.pod.length - 1) return { problem: `pod "${r.pod}" is not <namespace>/<name>` };
  const packed: Packed = [
    r.pod.slice(0, slash),
    r.pod.slice(slash + 1),
    packUid(r.podUid),
    packSandbox(r.sandbox),
    r.iface,
    r.node,
    packSince(r.since),
    r.static === true,
  ];
  packedOf.set(r, packed);
  return packed;
}

const ditto = (value: string, above: string | undefined) => value === above ? "=" : value;

function formatV3(offset: string, p: Packed, above: Packed | undefined): string {
  const [ns, pod, uid, sandbox, iface, node, since, isStatic] = p;
  return `${offset} ${ditto(ns, above?.[0])}/${pod} ${uid} ${sandbox} ${ditto(iface, above?.[4])} ${
    ditto(node, above?.[5])
  } ${ditto(since, above?.[6])}${isStatic ? " static" : ""}`;
}

/** One v3 line after its offset → its fields and packed tokens, or what is wrong with it. */
function parseV3(line: string, above: Packed | undefined): { r: Fields; p: Packed } | string {
  const tokens = line.split(" ");
  const [pod, uidT, sandboxT, ifaceT, nodeT, sinceT, flag] = tokens;
  if (tokens.length < 6 || tokens.length > 7 || (flag !== undefined && flag !== "static")) {
    return `not a reservation ("${lineShape}": ${tokens.length} fields)`;
  }
  const slash = pod.indexOf("/");
  if (slash <= 0) return `not a reservation ("${lineShape}": no <namespace>/<pod> first)`;
  const resolve = (token: string, i: 0 | 4 | 5 | 6) => token === "=" ? above?.[i] : token;
  const ns = resolve(pod.slice(0, slash), 0), iface = resolve(ifaceT, 4), node = resolve(nodeT, 5);
  const sinceP = resolve(sinceT, 6);
  if (ns === undefined || iface === undefined || node === undefined || sinceP === undefined) {
    return `"=" on the first line`;
  }
  const podUid = unpackUid(uidT), sandbox = unpackSandbox(sandboxT), since = unpackSince(sinceP);
  if (!podUid) return `pod uid "${uidT}" is neither base64url of 16 bytes nor "!<uid>"`;
  if (!sandbox) return `sandbox "${sandboxT}" is neither base64url nor "!<sandbox>"`;
  if (!since) return `since "${sinceT}" is neither YYYYMMDDThhmmssZ nor "!<time>"`;
  const isStatic = flag === "static";
  const name = pod.slice(slash + 1);
  const r: Fields = {
    pod: `${ns}/${name}`,
    podUid,
    sandbox,
    iface,
    node,
    since,
    ...(isStatic ? { static: true } : {}),
  };
  return { r, p: [ns, name, uidT, sandboxT, iface, node, sinceP, isStatic] };
}

const reservationKeys = ["uid", "sandbox", "iface", "node", "since"] as const;

/** A v1 or v2 line after its offset → its fields, or what is wrong with it. */
function parseLegacy(line: string): Fields | string {
  const [pod, ...rest] = line.split(" ");
  if (!pod?.includes("/")) return `not a reservation ("${lineShape}": no <namespace>/<pod> first)`;
  if (rest[0]?.startsWith("uid=")) {
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
  const [podUid, sandbox, iface, node, since, flag] = rest;
  if ([podUid, sandbox, iface, node, since].some((f) => !f) || rest.length > 6 || (flag ?? "static") !== "static") {
    return `not a reservation ("${lineShape}": ${rest.length + 1} fields)`;
  }
  return { pod, podUid, sandbox, iface, node, since, ...(flag === "static" ? { static: true } : {}) };
}

// --- a block's text ----------------------------------------------------------------------------------------------

/** The stored text → offset → reservation, or what is wrong with it. Reads v3, and v1/v2 texts of older danm. */
export function parseReservations(text: string): Record<string, Fields> | string {
  const out: Record<string, Fields> = {};
  const lines = text.split("\n");
  const first = lines.findIndex((l) => l.trim() !== "");
  const header = first >= 0 && lines[first].startsWith("#") ? lines[first] : undefined;
  if (header !== undefined && header.split(" ")[0] !== "#v3") {
    return `format "${header.split(" ")[0]}" is not one this danm reads (v3, or v1/v2 without a header)`;
  }
  let above: Packed | undefined;
  for (const [i, line] of lines.entries()) {
    if (line.trim() === "" || i === first && header !== undefined) continue;
    const sp = line.indexOf(" ");
    const offset = sp > 0 ? line.slice(0, sp) : "";
    if (!/^\d+$/.test(offset)) return `line "${line}": expected \`<offset> <reservation>\``;
    const key = String(Number(offset));
    if (key in out) return `offset ${offset} appears twice`;
    if (header === undefined) {
      const r = parseLegacy(line.slice(sp + 1));
      if (typeof r === "string") return `line "${line}": ${r}`;
      out[key] = r;
    } else {
      const got = parseV3(line.slice(sp + 1), above);
      if (typeof got === "string") return `line "${line}": ${got}`;
      out[key] = got.r;
      packedOf.set(got.r, got.p);
      above = got.p;
    }
  }
  return out;
}

/** offset → reservation → the v3 text (lines in offset order), or why it cannot be stored. */
export function formatReservations(map: ReservationMap): string | { readonly problem: string } {
  const offsets = Object.keys(map);
  if (offsets.length === 0) return "";
  const lines = [v3Header];
  let above: Packed | undefined;
  for (const offset of offsets.sort((a, b) => Number(a) - Number(b))) {
    const p = /^\d+$/.test(offset) ? pack(map[offset]) : { problem: "offsets are decimal" };
    if ("problem" in p) return { problem: `offset ${offset}: ${p.problem}` };
    lines.push(formatV3(offset, p, above));
    above = p;
  }
  return lines.join("\n");
}

/** True for an object the codec made or checked (a fast path for the decoded map's guard). */
export const isPacked = (u: object) => packedOf.has(u);
