// What only the in-memory twin offers: host NICs, kernels lacking kinds, namespace lifetime, sent GARPs.
import { Effect } from "effect";
import { Netlink, NetnsRef, withNetns } from "../../../core/ports/netlink.ts";
import * as Memory from "../../../adapters/netlink/memory.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const runWith = <A>(kernel: Memory.MemoryKernel, eff: Effect.Effect<A, unknown, Netlink>) =>
  Effect.runPromise(Effect.provide(eff, Memory.layer(kernel)));

Deno.test("memory: host NICs are physical devices: listed, up, not deletable, parents for pod links", async () => {
  const kernel = new Memory.MemoryKernel({ hostNics: [{ name: "ens3", mac: "52:54:00:00:00:03" }, { name: "ens4" }] });
  await runWith(
    kernel,
    Effect.gen(function* () {
      const nl = yield* Netlink;
      const links = yield* nl.host.links();
      assertEquals(links.map((l) => `${l.index} ${l.name} ${l.kind} ${l.operstate}`), [
        "1 lo loopback down",
        "2 ens3 device up",
        "3 ens4 device up",
      ]);
      assertEquals((yield* nl.host.link("ens3")).mac, "52:54:00:00:00:03");
      const denied = yield* Effect.flip(nl.host.deleteLink("ens3"));
      assertEquals([denied._tag, denied.message], [
        "NetlinkUnsupported",
        "delete link ens3: unsupported (ens3 cannot be deleted)",
      ]);
      const pod = yield* nl.createNetns("pod1");
      yield* nl.host.createLink({
        kind: "ipvlan",
        name: "eth0",
        parent: "ens3",
        netns: NetnsRef.path(pod),
        mode: "l3",
      });
      yield* nl.host.createLink({ kind: "vlan", name: "ens4.100", parent: "ens4", id: 100 });
      yield* nl.host.createLink({ kind: "macvlan", name: "eth1", parent: "ens4.100", netns: NetnsRef.path(pod) });
      yield* Effect.scoped(Effect.gen(function* () {
        const ns = yield* nl.netns(NetnsRef.path(pod));
        // eth0 got ifindex 2 in the pod, the index of its parent ens3 on the host: as the kernel, no parent then.
        assertEquals((yield* ns.links()).map((l) => `${l.index} ${l.name} ${l.kind} ${l.parent}`), [
          "1 lo loopback undefined",
          "2 eth0 ipvlan undefined",
          "3 eth1 macvlan 4",
        ]);
      }));
      // The pod namespace goes: its virtual links die with it, the host keeps its NICs.
      yield* nl.deleteNetns("pod1");
      assertEquals((yield* nl.host.links()).map((l) => l.name), ["lo", "ens3", "ens4", "ens4.100"]);
    }),
  );
  assertEquals(kernel.namespaceCount(), 0);
});

Deno.test("memory: a NIC moved into a namespace returns to the host when the namespace dies", async () => {
  const kernel = new Memory.MemoryKernel({ hostNics: [{ name: "ens5" }] });
  await runWith(
    kernel,
    Effect.gen(function* () {
      const nl = yield* Netlink;
      const path = yield* nl.createNetns("sriov");
      yield* nl.host.moveLink("ens5", NetnsRef.path(path));
      yield* nl.host.createLink({ kind: "veth", name: "host0", peer: { name: "pod0", netns: NetnsRef.path(path) } });
      yield* Effect.scoped(Effect.gen(function* () {
        // An open fd keeps the namespace alive after its name is gone.
        const fd = yield* nl.openNetns(path);
        yield* nl.deleteNetns("sriov");
        const ns = yield* nl.netns(fd);
        assertEquals((yield* ns.links()).map((l) => l.name), ["lo", "ens5", "pod0"]);
        assertEquals((yield* nl.host.links()).map((l) => l.name), ["lo", "host0"]);
      }));
      const back = yield* nl.host.links();
      assertEquals(back.map((l) => `${l.name} ${l.kind} ${l.up}`), ["lo loopback false", "ens5 device false"]);
    }),
  );
  assertEquals(kernel.namespaceCount(), 0);
});

Deno.test("memory: a kernel without ipvlan, vlan and dummy refuses them as unsupported", async () => {
  const kernel = new Memory.MemoryKernel({
    unsupportedKinds: ["ipvlan", "vlan", "dummy"],
    hostNics: [{ name: "ens3" }],
  });
  await runWith(
    kernel,
    Effect.gen(function* () {
      const nl = yield* Netlink;
      const e = yield* Effect.flip(nl.host.createLink({ kind: "ipvlan", name: "ipv0", parent: "ens3" }));
      assertEquals([e._tag, e.message], [
        "NetlinkUnsupported",
        "create link ipv0 (ipvlan): unsupported (Unknown device type)",
      ]);
      assertEquals((yield* Effect.flip(nl.host.createLink({ kind: "dummy", name: "d0" })))._tag, "NetlinkUnsupported");
      yield* nl.host.createLink({ kind: "macvlan", name: "mv0", parent: "ens3" });
      assertEquals((yield* nl.host.link("mv0")).kind, "macvlan");
    }),
  );
});

Deno.test("memory: gratuitous ARPs are recorded with the announcing MAC", async () => {
  const kernel = new Memory.MemoryKernel({ hostNics: [{ name: "ens3", mac: "52:54:00:00:00:03" }] });
  await runWith(
    kernel,
    Effect.gen(function* () {
      const nl = yield* Netlink;
      yield* nl.host.gratuitousArp("ens3", "192.0.2.7");
    }),
  );
  assertEquals(kernel.garps, [{ netns: kernel.host.id, link: "ens3", address: "192.0.2.7", mac: "52:54:00:00:00:03" }]);
  assert(kernel.linkCount() === 2, "lo and ens3");
});

Deno.test("withNetns: a handle for the duration of one program, released afterwards", async () => {
  const kernel = new Memory.MemoryKernel();
  const path = kernel.createNetns("w1");
  const names = await runWith(
    kernel,
    withNetns(NetnsRef.path(path), (ns) =>
      Effect.gen(function* () {
        yield* ns.createLink({ kind: "dummy", name: "d0" });
        return (yield* ns.links()).map((l) => l.name);
      })),
  );
  assertEquals(names, ["lo", "d0"]);
  // Only the name holds the namespace now: deleting it ends it.
  kernel.deleteNetns("w1");
  assertEquals([kernel.namespaceCount(), kernel.linkCount()], [0, 1]);
});
