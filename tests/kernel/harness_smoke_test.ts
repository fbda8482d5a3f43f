// Smoke test of the kernel tier (runs in the QEMU guest): link kinds the host kernel lacks.
import { assert, assertEquals } from "../harness/assert.ts";
import { netnsScope } from "../harness/netns.ts";

Deno.test("guest kernel: dummy, 802.1Q vlan and ipvlan, ipvlan moved into a netns", async () => {
  await using scope = netnsScope();
  const ns = await scope.netns("kern");
  await scope.ip(undefined, "link", "add", "kdummy0", "type", "dummy");
  try {
    await scope.ip(undefined, "link", "add", "link", "kdummy0", "name", "kdummy0.42", "type", "vlan", "id", "42");
    await scope.ip(undefined, "link", "add", "link", "kdummy0", "name", "kipv0", "type", "ipvlan", "mode", "l2");
    const vlan = await scope.ipJson(undefined, "-d", "link", "show", "kdummy0.42") as {
      linkinfo: { info_kind: string; info_data: { id: number } };
    }[];
    assertEquals(vlan[0].linkinfo.info_kind, "vlan");
    assertEquals(vlan[0].linkinfo.info_data.id, 42);
    await scope.ip(undefined, "link", "set", "kipv0", "netns", ns);
    const inNs = await scope.ipJson(ns, "-d", "link", "show", "kipv0") as { linkinfo: { info_kind: string } }[];
    assertEquals(inNs[0].linkinfo.info_kind, "ipvlan");
    const onHost = await scope.ipJson(undefined, "link", "show") as { ifname: string }[];
    assert(!onHost.some((l) => l.ifname === "kipv0"), "ipvlan still visible outside its netns");
  } finally {
    await scope.ip(undefined, "link", "del", "kdummy0").catch(() => {});
  }
});
