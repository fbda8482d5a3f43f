// The nf_tables netlink encoding of policy set elements (adapters/netlink/nftables.ts): keys byte for byte as
// `nft --debug=netlink` shows them for the same elements (nftables 1.0.6, printed as host-order 32-bit words), the
// elements it refuses (the caller then patches with nft), and the batch's shape: begin, removals, additions, end.
import { concatKey, elementBatch, NotEncodable } from "../../../adapters/netlink/nftables.ts";
import { Attrs, decodeMessages, Writer } from "../../../adapters/netlink/wire.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

/** Bytes as nft's debug output prints them: 4-byte words read little-endian, 8 hex digits each. */
const words = (b: Uint8Array) =>
  Array.from({ length: b.length / 4 }, (_, i) => new DataView(b.buffer, b.byteOffset).getUint32(i * 4, true))
    .map((w) => w.toString(16).padStart(8, "0")).join(" ");

Deno.test("concatKey: start and end keys exactly as nft --debug=netlink encodes the same elements", () => {
  const cases: Array<[string, string, string]> = [
    ["10.0.9.4/31 . tcp . 80-81", "0409000a 00000006 00005000", "0509000a 00000006 00005100"],
    ["0.0.0.0/0 . sctp . 0-65535", "00000000 00000084 00000000", "ffffffff 00000084 0000ffff"],
    [
      "fd00:1::/120 . udp . 5000-5010",
      "010000fd 00000000 00000000 00000000 00000011 00008813",
      "010000fd 00000000 00000000 ff000000 00000011 00009213",
    ],
  ];
  for (const [element, key, keyEnd] of cases) {
    const k = concatKey(element);
    assertEquals([words(k.key), words(k.keyEnd)], [key, keyEnd], element);
  }
  // A single port is a range of one.
  assertEquals(words(concatKey("10.0.0.2/32 . udp . 53").keyEnd), "0200000a 00000011 00003500");
});

Deno.test("concatKey refuses what is not a canonical (address . protocol . port) element", () => {
  for (const bad of ["10.0.0.0/24", "10.0.0.1/24 . tcp . 80", "10.0.0.0/24 . icmp . 80", "10.0.0.0/24 . tcp . 90-80"]) {
    let refused = false;
    try {
      concatKey(bad);
    } catch (e) {
      refused = e instanceof NotEncodable;
    }
    assert(refused, `${bad} was encoded`);
  }
});

Deno.test("elementBatch: begin, every removal, every addition (create), end; acks asked for the element messages", () => {
  const el = concatKey("10.0.0.2/32 . tcp . 80");
  const { bytes, acks, begin } = elementBatch("danm_netpol", [{ set: "in_0_l4v4", elements: [el] }], [
    { set: "out_0_l4v4", elements: [el] },
    { set: "in_0_l4v6", elements: [] },
  ], 100);
  const msgs = decodeMessages(bytes);
  assertEquals(msgs.map((m) => [m.type, m.seq, m.flags]), [
    [16, 100, 0x1], // NFNL_MSG_BATCH_BEGIN
    [(10 << 8) | 14, 101, 0x1 | 0x4], // NFT_MSG_DELSETELEM, ACK
    [(10 << 8) | 12, 102, 0x1 | 0x4 | 0x400], // NFT_MSG_NEWSETELEM, ACK, CREATE
    [17, 103, 0x1], // NFNL_MSG_BATCH_END
  ]);
  assertEquals([acks, begin], [[101, 102], 100]);
  // nfgenmsg: the batch names the nf_tables subsystem (res_id, big-endian); element messages the inet family.
  assertEquals([...msgs[0].payload.subarray(0, 4)], [0, 0, 0, 10]);
  assertEquals([...msgs[1].payload.subarray(0, 4)], [1, 0, 0, 0]);
  const attrs = Attrs.parse(msgs[2].payload, 4);
  assertEquals([attrs.str(1), attrs.str(2)], ["danm_netpol", "out_0_l4v4"]);
  const elem = attrs.nested(3)!.nested(1)!;
  assertEquals(words(elem.nested(1)!.raw(1)!), words(el.key));
  assertEquals(words(elem.nested(10)!.raw(1)!), words(el.keyEnd));
});

Deno.test("Writer: every write that grows the buffer lands in the new one (a batch of many elements crosses 256 bytes)", () => {
  for (let pre = 250; pre < 258; pre++) {
    const w = new Writer().zeros(pre).u8(1).u16(2).u32(3).i32(-4).bytes(Uint8Array.of(5, 6, 7));
    const out = w.zeros(300).finish();
    const v = new DataView(out.buffer);
    assertEquals(
      [v.getUint8(pre), v.getUint16(pre + 1, true), v.getUint32(pre + 3, true), v.getInt32(pre + 7, true)],
      [1, 2, 3, -4],
    );
    assertEquals([...out.subarray(pre + 11, pre + 14)], [5, 6, 7]);
    assertEquals(out.length, pre + 14 + 300);
  }
});
