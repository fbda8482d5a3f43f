// The Netlink contract against the live layer in the QEMU guest, for the kinds the host kernel lacks:
// ipvlan, 802.1Q vlan and dummy (checked with `ip -json` from outside as well).
import { NetnsRef } from "../../../core/ports/netlink.ts";
import * as Live from "../../../adapters/netlink/live.ts";
import { netnsScope } from "../../harness/netns.ts";
import { registerNetlinkContract } from "../../contract/netlink.ts";

registerNetlinkContract({
  label: "live/guest",
  core: true,
  kinds: ["veth", "macvlan", "ipvlan", "vlan", "vxlan", "bridge", "dummy"],
  available: ["veth", "macvlan", "ipvlan", "vlan", "vxlan", "bridge", "dummy"],
  setup: () => {
    const scope = netnsScope();
    return Promise.resolve({
      layer: Live.layer(),
      scratch: async (prefix: string) => {
        const name = await scope.netns(prefix);
        return { ref: NetnsRef.path(scope.path(name)), ip: (...args: string[]) => scope.ipJson(name, ...args) };
      },
      dispose: () => scope.dispose(),
    });
  },
});
