import { encodeStrings, fields, message, ProtobufError, text } from "../../../adapters/kubelet/protobuf.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("protobuf: string fields round-trip, empty ones are omitted, multi-byte lengths work", () => {
  const long = "x".repeat(300);
  const buf = encodeStrings([[1, "cnf"], [2, ""], [3, "default"], [4, long]]);
  const got = [...fields(buf)].map((f) => [f.field, text(f)]);
  assertEquals(got, [[1, "cnf"], [3, "default"], [4, long]]);
});

Deno.test("protobuf: unknown varint, fixed64 and fixed32 fields are skipped; nested messages are walked", () => {
  const inner = encodeStrings([[1, "nokia.k8s.io/sriov_ens1f0"], [2, "0000:81:10.1"]]);
  const buf = new Uint8Array([
    (3 << 3) | 0,
    0x96,
    0x01, // field 3 varint 150
    (4 << 3) | 1,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8, // field 4 fixed64
    (5 << 3) | 5,
    1,
    2,
    3,
    4, // field 5 fixed32
    (2 << 3) | 2,
    inner.length,
    ...inner,
  ]);
  const fs = [...fields(buf)];
  assertEquals(fs.map((f) => f.field), [3, 4, 5, 2]);
  assertEquals(fs[0].wire === 0 ? fs[0].value : undefined, 150n);
  assertEquals([...fields(message(fs[3]))].map(text), ["nokia.k8s.io/sriov_ens1f0", "0000:81:10.1"]);
});

Deno.test("protobuf: truncated, over-long and unsupported input is a ProtobufError", () => {
  const ok = encodeStrings([[1, "abc"]]);
  for (
    const bad of [
      ok.subarray(0, ok.length - 1), // length runs past the end
      new Uint8Array([(1 << 3) | 0, 0x80]), // varint cut short
      new Uint8Array([(1 << 3) | 1, 1, 2]), // fixed64 cut short
      new Uint8Array([(1 << 3) | 3]), // group start: not supported
      new Uint8Array([0]), // field number 0
      new Uint8Array([(1 << 3) | 2, 2, 0xff, 0xfe]), // not UTF-8
    ]
  ) {
    let thrown: unknown;
    try {
      [...fields(bad)].map(text);
    } catch (e) {
      thrown = e;
    }
    assertEquals(thrown instanceof ProtobufError, true, `${bad}: ${thrown}`);
  }
});
