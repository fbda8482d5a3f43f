// A minimal DER encoder (X.690), enough to write X.509 certificates: the webhook issues its own serving
// certificate without openssl, cert-manager or the removed certificates.k8s.io/v1beta1 API.

export type Der = Uint8Array<ArrayBuffer>;
type Bytes = Uint8Array<ArrayBuffer>;

function concat(parts: ReadonlyArray<Uint8Array>): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function length(n: number): Bytes {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** Tag-length-value with an explicit tag byte. */
export const tlv = (tag: number, ...content: ReadonlyArray<Uint8Array>): Der => {
  const body = concat(content);
  return concat([Uint8Array.of(tag), length(body.length), body]);
};

export const sequence = (...items: ReadonlyArray<Der>): Der => tlv(0x30, ...items);
export const set = (...items: ReadonlyArray<Der>): Der => tlv(0x31, ...items);
export const boolean = (v: boolean): Der => tlv(0x01, Uint8Array.of(v ? 0xff : 0x00));
export const nullValue = (): Der => tlv(0x05);
export const octetString = (bytes: Uint8Array): Der => tlv(0x04, bytes);
export const utf8String = (s: string): Der => tlv(0x0c, new TextEncoder().encode(s));

/** A non-negative INTEGER from big-endian magnitude bytes (minimal two's complement). */
export function unsignedInteger(magnitude: Uint8Array): Der {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = magnitude.subarray(i);
  const body = trimmed.length > 0 && (trimmed[0] & 0x80) !== 0 ? concat([Uint8Array.of(0), trimmed]) : trimmed;
  return tlv(0x02, body.length === 0 ? Uint8Array.of(0) : body);
}

export const smallInteger = (n: number): Der => {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return unsignedInteger(Uint8Array.from(bytes.length ? bytes : [0]));
};

/** BIT STRING with `unusedBits` padding bits at the end of the last byte. */
export const bitString = (bytes: Uint8Array, unusedBits = 0): Der => tlv(0x03, Uint8Array.of(unusedBits), bytes);

/** A named-bit BIT STRING (X.509 KeyUsage): bit 0 is the most significant bit of the first byte. */
export function namedBits(bits: ReadonlyArray<number>): Der {
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const b of bits) bytes[Math.floor(b / 8)] |= 0x80 >> (b % 8);
  return bitString(bytes, 7 - (highest % 8));
}

export function oid(dotted: string): Der {
  const parts = dotted.split(".").map(Number);
  const body: number[] = [parts[0] * 40 + parts[1]];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [];
    let v = p;
    do {
      chunk.unshift(v & 0x7f);
      v = Math.floor(v / 128);
    } while (v > 0);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i] |= 0x80;
    body.push(...chunk);
  }
  return tlv(0x06, Uint8Array.from(body));
}

const two = (n: number) => String(n).padStart(2, "0");

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
export function time(d: Date): Der {
  const y = d.getUTCFullYear();
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${
    two(d.getUTCSeconds())
  }Z`;
  return y < 2050
    ? tlv(0x17, new TextEncoder().encode(`${two(y % 100)}${rest}`))
    : tlv(0x18, new TextEncoder().encode(`${y}${rest}`));
}

/** [n] EXPLICIT: a constructed context tag around one encoded value. */
export const explicit = (n: number, inner: Der): Der => tlv(0xa0 | n, inner);
/** [n] IMPLICIT primitive: the value bytes under a context tag. */
export const implicitPrimitive = (n: number, bytes: Uint8Array): Der => tlv(0x80 | n, bytes);

export function pem(label: string, der: Uint8Array): string {
  let bin = "";
  for (const b of der) bin += String.fromCharCode(b);
  const b64 = btoa(bin);
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

export function unpem(text: string): Bytes {
  const b64 = text.replace(/-----(BEGIN|END) [^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
