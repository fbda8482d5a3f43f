// The Netlink contract against the live layer on the host kernel (veth, macvlan, vxlan, bridge), every result
// also checked with `ip -json` from outside. ipvlan, vlan and dummy run in the kernel tier.
import { Schema } from "effect";
import type { CreatableKind } from "../../../core/ports/netlink.ts";
import { NetnsRef } from "../../../core/ports/netlink.ts";
import * as Live from "../../../adapters/netlink/live.ts";
import { assertEquals } from "../../harness/assert.ts";
import { netnsScope } from "../../harness/netns.ts";
import { registerNetlinkContract } from "../../contract/netlink.ts";

const modules: Partial<Record<CreatableKind, string>> = { ipvlan: "ipvlan", vlan: "8021q", dummy: "dummy" };
const kernelRelease = Deno.readTextFileSync("/proc/sys/kernel/osrelease").trim();
/** A kind is missing when its module is neither loaded nor installed (the host kernel lacks these three). */
function missing(kind: CreatableKind): boolean {
  const mod = modules[kind]!;
  const present = (p: string) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false;
    }
  };
  if (present(`/sys/module/${mod}`)) return false;
  try {
    return !Deno.readTextFileSync(`/lib/modules/${kernelRelease}/modules.dep`).includes(`/${mod}.ko`);
  } catch {
    return true;
  }
}

const IpLinks = Schema.decodeUnknownSync(Schema.Array(Schema.Struct({ ifname: Schema.String })));
const linkNames = async (scope: ReturnType<typeof netnsScope>) =>
  IpLinks(await scope.ipJson(undefined, "link", "show")).map((l) => l.ifname).sort();
const netnsNames = () => [...Deno.readDirSync("/run/netns")].map((e) => e.name).sort();

registerNetlinkContract({
  label: "live/host",
  core: true,
  kinds: ["veth", "macvlan", "vxlan", "bridge"],
  available: ["veth", "macvlan", "vxlan", "bridge"],
  unsupported: (["ipvlan", "vlan", "dummy"] as const).filter(missing),
  setup: async () => {
    const scope = netnsScope();
    const hostLinks = await linkNames(scope), namespaces = netnsNames();
    return {
      layer: Live.layer(),
      scratch: async (prefix: string) => {
        const name = await scope.netns(prefix);
        return { ref: NetnsRef.path(scope.path(name)), ip: (...args: string[]) => scope.ipJson(name, ...args) };
      },
      dispose: async () => {
        await scope.dispose();
        assertEquals(await linkNames(scope), hostLinks, "host links left behind");
        assertEquals(netnsNames(), namespaces, "namespaces left behind");
      },
    };
  },
});
