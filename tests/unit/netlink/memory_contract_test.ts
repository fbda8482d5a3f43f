// The Netlink contract against the in-memory twin: every kind, every rule.
import { NetnsRef } from "../../../core/ports/netlink.ts";
import * as Memory from "../../../adapters/netlink/memory.ts";
import { assertEquals } from "../../harness/assert.ts";
import { registerNetlinkContract } from "../../contract/netlink.ts";

registerNetlinkContract({
  label: "memory",
  core: true,
  kinds: ["veth", "macvlan", "ipvlan", "vlan", "vxlan", "bridge", "dummy"],
  available: ["veth", "macvlan", "ipvlan", "vlan", "vxlan", "bridge", "dummy"],
  setup: () => {
    const kernel = new Memory.MemoryKernel();
    const created: string[] = [];
    return Promise.resolve({
      layer: Memory.layer(kernel),
      scratch: (prefix: string) => {
        const name = `${prefix}-${crypto.randomUUID().slice(0, 6)}`;
        const ref = NetnsRef.path(kernel.createNetns(name));
        created.push(name);
        kernel.setUp(kernel.resolve(ref).find("lo"), true);
        return Promise.resolve({ ref });
      },
      dispose: () => {
        for (const name of created) kernel.deleteNetns(name);
        // Whatever a test made must be gone with its namespaces: nothing left but the host's lo.
        assertEquals(kernel.namespaceCount(), 0, "namespaces left behind");
        assertEquals(kernel.linkCount(), 1, "links left behind");
        return Promise.resolve();
      },
    });
  },
});
