// Netlink framing: nlmsghdr, fixed family headers and (nested) rtattrs, encoded and decoded with DataView.
// Host byte order is little-endian on every platform danm targets; network-order fields say so (be16/be32).
// Malformed input from the kernel is a KernelError (EBADMSG), never an exception of another kind.
import { Errno, KernelError } from "./errors.ts";

export const NLMSG_HDRLEN = 16;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
/** Flags on an NLMSG_ERROR: the original request was not echoed back / TLVs follow. */
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
export const NLMSGERR_ATTR_MSG = 1;

const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

export const align4 = (n: number): number => (n + 3) & ~3;

/** Builds a byte sequence: fixed-size headers followed by rtattrs, with nesting. */
export class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  private len = 0;

  private reserve(n: number): number {
    const at = this.len;
    if (at + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, at + n));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.len += n;
    return at;
  }

  get length(): number {
    return this.len;
  }

  /** Raw struct fields, little-endian unless stated. */
  u8(v: number): this {
    const at = this.reserve(1); // first: reserving may replace buf and view
    this.view.setUint8(at, v);
    return this;
  }
  u16(v: number): this {
    const at = this.reserve(2);
    this.view.setUint16(at, v, true);
    return this;
  }
  u32(v: number): this {
    const at = this.reserve(4);
    this.view.setUint32(at, v >>> 0, true);
    return this;
  }
  i32(v: number): this {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
    return this;
  }
  bytes(b: Uint8Array): this {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
    return this;
  }
  zeros(n: number): this {
    const at = this.reserve(n);
    this.buf.fill(0, at, this.len);
    return this;
  }
  private pad(): void {
    const extra = align4(this.len) - this.len;
    if (extra) this.zeros(extra);
  }

  /** One rtattr with a raw payload. */
  attr(type: number, payload: Uint8Array): this {
    this.pad();
    this.u16(4 + payload.length).u16(type).bytes(payload);
    this.pad();
    return this;
  }
  attrU8(type: number, v: number): this {
    return this.attr(type, Uint8Array.of(v));
  }
  attrU16(type: number, v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    return this.attr(type, b);
  }
  attrBe16(type: number, v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, false);
    return this.attr(type, b);
  }
  attrU32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    return this.attr(type, b);
  }
  /** NUL-terminated string. */
  attrStr(type: number, s: string): this {
    const enc = new TextEncoder().encode(s);
    const b = new Uint8Array(enc.length + 1);
    b.set(enc);
    return this.attr(type, b);
  }
  attrFlag(type: number): this {
    return this.attr(type, new Uint8Array(0));
  }
  /** A nested attribute; `fill` writes its children. */
  nest(type: number, fill: (w: this) => void): this {
    this.pad();
    const at = this.reserve(4);
    fill(this);
    this.pad();
    this.view.setUint16(at, this.len - at, true);
    this.view.setUint16(at + 2, type | NLA_F_NESTED, true);
    return this;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** A complete netlink message: nlmsghdr + body. */
export function encodeMessage(type: number, flags: number, seq: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(NLMSG_HDRLEN + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(4, type, true);
  v.setUint16(6, flags, true);
  v.setUint32(8, seq, true);
  v.setUint32(12, 0, true); // port id 0: the kernel fills in ours
  out.set(body, NLMSG_HDRLEN);
  return out;
}

export interface Message {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

/** Splits a datagram into messages; a truncated trailer is a protocol error. */
export function decodeMessages(buf: Uint8Array): Message[] {
  const out: Message[] = [];
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = v.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new KernelError(Errno.EBADMSG, `malformed netlink message at byte ${off}: length ${len}`);
    }
    out.push({
      type: v.getUint16(off + 4, true),
      flags: v.getUint16(off + 6, true),
      seq: v.getUint32(off + 8, true),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes by type (nested flag masked off); the last occurrence wins, as in the kernel's nla_parse. */
export class Attrs {
  private constructor(private readonly map: Map<number, Uint8Array>) {}

  static parse(buf: Uint8Array, offset = 0): Attrs {
    const map = new Map<number, Uint8Array>();
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let off = offset;
    while (off + 4 <= buf.length) {
      const len = v.getUint16(off, true);
      const type = v.getUint16(off + 2, true) & NLA_TYPE_MASK;
      if (len < 4 || off + len > buf.length) break; // a truncated attribute ends the list, as nla_parse does
      map.set(type, buf.subarray(off + 4, off + len));
      off += align4(len);
    }
    return new Attrs(map);
  }

  has(type: number): boolean {
    return this.map.has(type);
  }
  raw(type: number): Uint8Array | undefined {
    return this.map.get(type);
  }
  private dv(type: number, size: number): DataView | undefined {
    const b = this.map.get(type);
    return b && b.length >= size ? new DataView(b.buffer, b.byteOffset, b.byteLength) : undefined;
  }
  u8(type: number): number | undefined {
    return this.dv(type, 1)?.getUint8(0);
  }
  u16(type: number): number | undefined {
    return this.dv(type, 2)?.getUint16(0, true);
  }
  be16(type: number): number | undefined {
    return this.dv(type, 2)?.getUint16(0, false);
  }
  u32(type: number): number | undefined {
    return this.dv(type, 4)?.getUint32(0, true);
  }
  str(type: number): string | undefined {
    const b = this.map.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
  }
  nested(type: number): Attrs | undefined {
    const b = this.map.get(type);
    return b ? Attrs.parse(b) : undefined;
  }
}

/** Reads the fixed family header of a message of `what` (e.g. "RTM_NEWLINK"), which must be `size` bytes at least. */
export function header(payload: Uint8Array, size: number, what: string): DataView {
  if (payload.length < size) {
    throw new KernelError(Errno.EBADMSG, `${what} of ${payload.length} bytes, shorter than its ${size}-byte header`);
  }
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}
