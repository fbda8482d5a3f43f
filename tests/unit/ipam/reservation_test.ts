import { Schema } from "effect";
import { Reservation } from "../../../core/api/ipam.ts";
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
    `telco/mme-0 uid=6f1c0a4e-4a1b-4f6e-9c55-2f0e3b9d1a77 sandbox=${
      "a".repeat(64)
    } iface=ext1 node=worker-1.example.com since=2026-11-27T21:00:00.000Z static`,
  );
  assertEquals(Schema.decodeUnknownSync(Reservation)(line), r);
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
