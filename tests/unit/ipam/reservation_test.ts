import { Schema } from "effect";
import { Reservation, Reservations } from "../../../core/api/ipam.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

Deno.test("a reservation is stored as one readable line and read back exactly", () => {
  const r = {
    pod: "telco/mme-0",
    podUid: "6f1c0a4e-4a1b-4f6e-9c55-2f0e3b9d1a77",
    sandbox: "a".repeat(64),
    iface: "ext1",
    node: "worker-1.example.com",
    since: "2026-11-27T21:00:00.000Z",
    static: true,
  } as const;
  const line = Schema.encodeSync(Reservation)(r);
  assertEquals(
    line,
    `telco/mme-0 6f1c0a4e-4a1b-4f6e-9c55-2f0e3b9d1a77 ${
      "a".repeat(64)
    } ext1 worker-1.example.com 2026-11-27T21:00:00.000Z static`,
  );
  assertEquals(Schema.decodeUnknownSync(Reservation)(line), r);
  // The first stored form, with field names, is still read.
  const keyed = `telco/mme-0 uid=6f1c0a4e-4a1b-4f6e-9c55-2f0e3b9d1a77 sandbox=${
    "a".repeat(64)
  } iface=ext1 node=worker-1.example.com since=2026-11-27T21:00:00.000Z static`;
  assertEquals(Schema.decodeUnknownSync(Reservation)(keyed), r);
  const { static: _s, ...dynamic } = r;
  assertEquals(Schema.decodeUnknownSync(Reservation)(Schema.encodeSync(Reservation)(dynamic)), dynamic);
});

Deno.test("malformed reservation lines and unencodable fields are refused", () => {
  const bad = Schema.decodeUnknownResult(Reservation)("default/p uid=x sandbox=y iface=eth0");
  assert(bad._tag === "Failure" && bad.failure.message.includes("missing node, since"), String(bad));
  assertEquals(
    Schema.decodeUnknownResult(Reservation)("no-namespace uid=a sandbox=b iface=c node=d since=e")._tag,
    "Failure",
  );
  for (const line of ["default/p u s eth0 n", "default/p u s eth0 n t extra", "default/p u s eth0 n t static x"]) {
    const got = Schema.decodeUnknownResult(Reservation)(line);
    assert(got._tag === "Failure" && got.failure.message.includes("fields"), `${line}: ${String(got)}`);
  }
  const spaced = Schema.encodeUnknownResult(Reservation)({
    pod: "ns/p",
    podUid: "u",
    sandbox: "s s",
    iface: "eth0",
    node: "n",
    since: "t",
  });
  assertEquals(spaced._tag, "Failure");
});

/** A reservation of pod `ns/<pod>` on eth0 of node n1. */
const reservationOf = (pod: string) => ({
  pod: `ns/${pod}`,
  podUid: `uid-${pod}`,
  sandbox: `sb-${pod}`,
  iface: "eth0",
  node: "n1",
  since: "2026-11-28T00:00:00.000Z",
});

Deno.test("a block's reservations are stored as one text, a line per offset in offset order, and read back", () => {
  const map = { "17": reservationOf("b"), "3": { ...reservationOf("a"), static: true }, "40": reservationOf("c") };
  const text = Schema.encodeSync(Reservations)(map);
  assertEquals(text.split("\n").map((l) => l.split(" ").slice(0, 2).join(" ")), ["3 ns/a", "17 ns/b", "40 ns/c"]);
  assertEquals(Schema.decodeUnknownSync(Reservations)(text), map);
  assertEquals(Schema.decodeUnknownSync(Reservations)(""), {});
  assertEquals(Schema.encodeSync(Reservations)({}), "");
});

Deno.test("a reservations text with a bad offset, a bad line or an offset twice is refused", () => {
  const line = "ns/p uid=u sandbox=s iface=eth0 node=n since=t";
  for (
    const [text, why] of [
      [`x ${line}`, "expected `<offset> <reservation>`"],
      [`5 ns/p uid=u`, "missing"],
      [`5 ${line}\n5 ${line}`, "offset 5 appears twice"],
    ] as const
  ) {
    const got = Schema.decodeUnknownResult(Reservations)(text);
    assert(got._tag === "Failure" && got.failure.message.includes(why), `${text}: ${String(got)}`);
  }
});

Deno.test("a block's reservations text: malformed entries are refused on encode; a re-encode after one change is exact", () => {
  const { since: _since, ...noSince } = reservationOf("x");
  for (
    const bad of [{ "1": noSince }, { "1": { ...reservationOf("x"), static: "yes" } }, { "1": "ns/x" }, [
      reservationOf("x"),
    ]]
  ) {
    assertEquals(Schema.encodeUnknownResult(Reservations)(bad)._tag, "Failure", JSON.stringify(bad));
  }
  assertEquals(
    Schema.encodeUnknownResult(Reservations)({ "1": { ...reservationOf("x"), iface: "a=b" } })._tag,
    "Failure",
  );
  // The same reservation objects in the next write of the block, one replaced and one added.
  const a = reservationOf("a"), b = reservationOf("b");
  const first = Schema.encodeSync(Reservations)({ "1": a, "2": b });
  const second = Schema.encodeSync(Reservations)({ "1": a, "2": reservationOf("c"), "3": b });
  assertEquals(first.split("\n").map((l) => l.split(" ")[1]), ["ns/a", "ns/b"]);
  assertEquals(second.split("\n").map((l) => l.split(" ")[1]), ["ns/a", "ns/c", "ns/b"]);
  assertEquals(Schema.decodeUnknownSync(Reservations)(second), { "1": a, "2": reservationOf("c"), "3": b });
});
