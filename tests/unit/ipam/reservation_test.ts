import { Schema } from "effect";
import { Reservations } from "../../../core/api/ipam.ts";
import { v3Header } from "../../../core/api/ipam_text.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const encode = Schema.encodeSync(Reservations);
const decode = Schema.decodeUnknownSync(Reservations);
const refusal = (text: string) => {
  const got = Schema.decodeUnknownResult(Reservations)(text);
  return got._tag === "Failure" ? got.failure.message : "decoded";
};

/** A reservation as a cluster makes it: a UUID pod UID, a 64-hex sandbox ID, a whole-second UTC time. */
const real = {
  pod: "telco/mme-0",
  podUid: "6f1c0a4e-4a1b-4f6e-9c55-2f0e3b9d1a77",
  sandbox: "0123456789abcdef".repeat(4),
  iface: "ext1",
  node: "worker-1.example.com",
  since: "2026-11-27T21:00:00Z",
  static: true,
} as const;

Deno.test("a block's reservations are written in v3: IDs in base64url, repeats as `=`, and read back exactly", () => {
  const next = { ...real, pod: "telco/mme-1", podUid: "7f1c0a4e-4a1b-4f6e-9c55-2f0e3b9d1a78", static: undefined };
  const { static: _s, ...dynamic } = next;
  const other = { ...dynamic, pod: "core/amf-0", node: "worker-2", since: "2026-11-27T21:00:07Z" };
  const text = encode({ "3": real, "4": dynamic, "9": other });
  assertEquals(text.split("\n"), [
    v3Header,
    "3 telco/mme-0 bxwKTkobT26cVS8OO50adw ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8 ext1 worker-1.example.com 20261127T210000Z static",
    "4 =/mme-1 fxwKTkobT26cVS8OO50aeA ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8 = = =",
    "9 core/amf-0 fxwKTkobT26cVS8OO50aeA ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8 = worker-2 20261127T210007Z",
  ]);
  assertEquals(decode(text), { "3": real, "4": dynamic, "9": other });
  // A third fewer bytes than the v2 line of the same reservation.
  const v2 = `3 ${[real.pod, real.podUid, real.sandbox, real.iface, real.node, "2026-11-27T21:00:00Z"].join(" ")}`;
  assert(text.split("\n")[2].length < (v2.length * 2) / 3, `${text.split("\n")[2].length} vs ${v2.length}`);
});

Deno.test("values v3 cannot pack are kept as they are behind `!`, and read back exactly", () => {
  const odd = {
    pod: "ns/p",
    podUid: "UID-1",
    sandbox: "!sb-ABC",
    iface: "eth0",
    node: "n1",
    since: "2026-11-27T21:00:00.123+01:00",
  };
  const hexish = { ...odd, podUid: "6F1C0A4E-4A1B-4F6E-9C55-2F0E3B9D1A77", sandbox: "abc", since: "2026-11-27" };
  const text = encode({ "1": odd, "2": hexish });
  assertEquals(text.split("\n").slice(1), [
    "1 ns/p !UID-1 !!sb-ABC eth0 n1 !2026-11-27T21:00:00.123+01:00",
    "2 =/p !6F1C0A4E-4A1B-4F6E-9C55-2F0E3B9D1A77 !abc = = !2026-11-27",
  ]);
  assertEquals(decode(text), { "1": odd, "2": hexish });
});

Deno.test("older danm's texts are read: v2 positional lines and v1 lines with field names", () => {
  const v2 = `3 telco/mme-0 ${real.podUid} ${real.sandbox} ext1 worker-1.example.com 2026-11-27T21:00:00Z static`;
  const v1 = `5 telco/mme-0 uid=${real.podUid} sandbox=${real.sandbox} iface=ext1 node=worker-1.example.com ` +
    `since=2026-11-27T21:00:00Z static`;
  assertEquals(decode(`${v2}\n${v1}`), { "3": real, "5": real });
  // Written back, they are v3.
  assertEquals(encode(decode(v2)).split("\n")[0], v3Header);
});

Deno.test("malformed reservations texts are refused with what is wrong", () => {
  const line = "ns/p uid=u sandbox=s iface=eth0 node=n since=t";
  const v3 = "ns/p !u !s eth0 n 20261127T210000Z";
  for (
    const [text, why] of [
      [`x ${line}`, "expected `<offset> <reservation>`"],
      [`5 ns/p uid=u iface=eth0`, "missing sandbox, node, since"],
      [`5 ${line}\n5 ${line}`, "offset 5 appears twice"],
      ["5 no-namespace u s eth0 n t", "no <namespace>/<pod>"],
      ["5 default/p u s eth0 n", "fields"],
      ["5 default/p u s eth0 n t static x", "fields"],
      [`#v9 newer\n5 ${v3}`, `format "#v9"`],
      [`${v3Header}\n5 ${v3}\n5 ${v3}`, "offset 5 appears twice"],
      [`${v3Header}\n5 =/p !u !s eth0 n 20261127T210000Z`, `"=" on the first line`],
      [`${v3Header}\n5 ns/p !u !s eth0 n 2026-11-27T21:00:00Z`, "since"],
      [`${v3Header}\n5 ns/p AAAA !s eth0 n 20261127T210000Z`, "pod uid"],
      [`${v3Header}\n5 ns/p !u s*s eth0 n 20261127T210000Z`, "sandbox"],
      [`${v3Header}\n5 ns/p !u !s eth0 n 20261127T210000Z stat`, "fields"],
      [`${v3Header}\n5 ns/p !u !s eth0 n`, "fields"],
    ] as const
  ) {
    assert(refusal(text).includes(why), `${text}: ${refusal(text)}`);
  }
});

/** A reservation of pod `ns/<pod>` on eth0 of node n1. */
const reservationOf = (pod: string) => ({
  pod: `ns/${pod}`,
  podUid: `uid-${pod}`,
  sandbox: `sb-${pod}`,
  iface: "eth0",
  node: "n1",
  since: "2026-11-28T00:00:00Z",
});

Deno.test("a block's reservations are one text, a line per offset in offset order; none is the empty text", () => {
  const map = { "17": reservationOf("b"), "3": { ...reservationOf("a"), static: true }, "40": reservationOf("c") };
  const text = encode(map);
  assertEquals(text.split("\n").slice(1).map((l) => l.split(" ").slice(0, 2).join(" ")), [
    "3 ns/a",
    "17 =/b",
    "40 =/c",
  ]);
  assertEquals(decode(text), map);
  assertEquals(decode(""), {});
  assertEquals(encode({}), "");
});

Deno.test("a block's reservations text: malformed entries are refused on encode; a re-encode after one change is exact", () => {
  const { since: _since, ...noSince } = reservationOf("x");
  for (
    const bad of [
      { "1": noSince },
      { "1": { ...reservationOf("x"), static: "yes" } },
      { "1": "ns/x" },
      [reservationOf("x")],
      { "x": reservationOf("x") },
      { "1": { ...reservationOf("x"), iface: "a=b" } },
      { "1": { ...reservationOf("x"), sandbox: "s s" } },
      { "1": { ...reservationOf("x"), pod: "no-namespace" } },
    ]
  ) {
    assertEquals(Schema.encodeUnknownResult(Reservations)(bad)._tag, "Failure", JSON.stringify(bad));
  }
  // The same reservation objects in the next write of the block, one replaced and one added: the ditto marks follow
  // the new neighbours, not the ones the object had when it was first written.
  const a = reservationOf("a"), b = { ...reservationOf("b"), node: "n2" };
  const first = encode({ "1": a, "2": b });
  const second = encode({ "1": a, "2": reservationOf("c"), "3": b });
  assertEquals(first.split("\n").slice(1).map((l) => l.split(" ").slice(1, 2).concat(l.split(" ")[5])), [
    ["ns/a", "n1"],
    ["=/b", "n2"],
  ]);
  assertEquals(second.split("\n").slice(1).map((l) => l.split(" ").slice(1, 2).concat(l.split(" ")[5])), [
    ["ns/a", "n1"],
    ["=/c", "="],
    ["=/b", "n2"],
  ]);
  assertEquals(decode(second), { "1": a, "2": reservationOf("c"), "3": b });
});
