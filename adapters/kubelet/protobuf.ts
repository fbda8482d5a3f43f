// The few protobuf wire-format pieces the kubelet PodResources client needs: encode length-delimited string fields,
// and walk a message's fields. Unknown fields are skipped by wire type, as protobuf requires, so newer kubelets
// (more fields) decode fine.
import { Schema } from "effect";

/** Malformed wire data; thrown by the readers below (they run inside Effect.try at the adapter's edge). */
export class ProtobufError extends Schema.TaggedError<ProtobufError>()("ProtobufError", { reason: Schema.String }) {
  override get message(): string {
    return this.reason;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A message made of string fields only (field number → value); empty strings are omitted, as proto3 does. */
export function encodeStrings(fields: ReadonlyArray<readonly [number, string]>): Uint8Array {
  const parts: number[] = [];
  for (const [field, value] of fields) {
    if (value === "") continue;
    const bytes = encoder.encode(value);
    parts.push(...varint((field << 3) | 2), ...varint(bytes.length), ...bytes);
  }
  return new Uint8Array(parts);
}

export type Field =
  | { readonly field: number; readonly wire: 0; readonly value: bigint }
  | { readonly field: number; readonly wire: 2; readonly bytes: Uint8Array }
  | { readonly field: number; readonly wire: 1 | 5 };

/** The fields of one message, in wire order. Throws ProtobufError on truncated or malformed input. */
export function* fields(buf: Uint8Array): Generator<Field> {
  let pos = 0;
  const readVarint = (): bigint => {
    let result = 0n, shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new ProtobufError({ reason: "truncated varint" });
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new ProtobufError({ reason: "varint longer than 64 bits" });
    }
  };
  while (pos < buf.length) {
    const key = readVarint();
    const field = Number(key >> 3n), wire = Number(key & 7n);
    if (field === 0) throw new ProtobufError({ reason: "field number 0" });
    switch (wire) {
      case 0:
        yield { field, wire, value: readVarint() };
        break;
      case 1:
      case 5: {
        const size = wire === 1 ? 8 : 4;
        if (pos + size > buf.length) throw new ProtobufError({ reason: "truncated fixed-width field" });
        pos += size;
        yield { field, wire };
        break;
      }
      case 2: {
        const len = Number(readVarint());
        if (pos + len > buf.length) {
          throw new ProtobufError({ reason: `field ${field}: length ${len} runs past the message` });
        }
        yield { field, wire, bytes: buf.subarray(pos, pos + len) };
        pos += len;
        break;
      }
      default:
        throw new ProtobufError({ reason: `field ${field}: unsupported wire type ${wire}` });
    }
  }
}

/** A length-delimited field as UTF-8 text. */
export function text(f: Field): string {
  if (f.wire !== 2) throw new ProtobufError({ reason: `field ${f.field}: expected a string, got wire type ${f.wire}` });
  try {
    return decoder.decode(f.bytes);
  } catch {
    throw new ProtobufError({ reason: `field ${f.field}: not UTF-8` });
  }
}

/** A length-delimited field holding a nested message. */
export function message(f: Field): Uint8Array {
  if (f.wire !== 2) {
    throw new ProtobufError({ reason: `field ${f.field}: expected a message, got wire type ${f.wire}` });
  }
  return f.bytes;
}
