// danm's addresses reach the real reference plugins through the real `static` IPAM plugin when it is in CNI_PATH
// (core/cni/attach/ipamhandoff.ts: no fakeipam process per delegate), and through the real fakeipam client when it
// is not — both on real network namespaces, with the plugins execed by the node daemon as on a node.
import { assertEquals } from "../../harness/assert.ts";
import { run } from "../../harness/proc.ts";
import { type CniNode, ipJson, startCniNode } from "./support.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };

/**
 * Two delegates with danm's IPAM: a macvlan `.conf` (the `macvlan` NetworkType is built in and runs no plugin) and a
 * bridge `.conf` whose host-local IPAM danm replaces.
 */
async function danmIpamNetworks(n: CniNode) {
  const r = n.run;
  await run(["ip", "link", "add", `hop${r}`, "type", "veth", "peer", "name", `hoq${r}`]);
  await run(["ip", "link", "set", `hop${r}`, "up"]);
  await run(["ip", "link", "set", `hoq${r}`, "up"]);
  await Deno.writeTextFile(
    `${n.cniDir}/hob${r}.conf`,
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `hob${r}`,
      type: "bridge",
      bridge: `hob${r}`,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.233.99.0/24" }]], dataDir: `${n.tmp}/host-local` },
    }),
  );
  await Deno.writeTextFile(
    `${n.cniDir}/hm${r}.conf`,
    JSON.stringify({ cniVersion: "1.0.0", name: `hm${r}`, type: "macvlan", master: `hop${r}`, mode: "bridge" }),
  );
  const macvlan = await n.createNetwork("DanmNet", `hm-${r}`, {
    NetworkID: `hm${r}`,
    NetworkType: "macvlan-conf",
    Options: { cidr: "10.233.1.0/24", net6: "fd00:233:1::/64" },
  });
  await n.createNetwork("DanmNet", `hb-${r}`, {
    NetworkID: `hob${r}`,
    NetworkType: "bridge",
    Options: { container_prefix: "hb", cidr: "10.233.3.0/24" },
  });
  const annotation = JSON.stringify([
    { network: `hm-${r}`, ip: "dynamic", ip6: "dynamic" },
    { network: `hb-${r}`, ip: "dynamic" },
  ]);
  return { annotation, macvlanUid: macvlan.metadata.uid! };
}

const globalAddresses = async (ns: string) =>
  Object.fromEntries(
    (await ipJson(ns, "addr", "show")).map((l) => [
      String(l.ifname),
      ((l.addr_info as Array<{ local: string; prefixlen: number; scope: string }>) ?? [])
        .filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`),
    ]),
  );

const cleanup = async (r: string) => {
  for (const dev of [`hop${r}`, `hob${r}`]) await run(["ip", "link", "del", dev]).catch(() => {});
};

Deno.test({
  name: "ipam handoff: with `static` in CNI_PATH the delegates get danm's addresses without a fakeipam process",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    try {
      const { annotation, macvlanUid } = await danmIpamNetworks(n);
      // A fakeipam that fails: the ADD can only succeed if no delegate execs it.
      await n.bin.addPlugin(
        "fakeipam",
        `#!/bin/sh\necho '{"cniVersion":"1.0.0","code":7,"msg":"fakeipam must not run here"}'\nexit 1\n`,
      );
      await n.createPod(`hs-${r}`, { "danm.io/interfaces": annotation });
      const sb = await n.fakelet.runPod("default", `hs-${r}`);
      assertEquals(await globalAddresses(sb.netnsName), {
        lo: [],
        eth0: ["10.233.1.1/24", "fd00:233:1::1/64"],
        hb1: ["10.233.3.1/24"],
      });
      const dels = await n.fakelet.stopPod("default", `hs-${r}`);
      assertEquals(dels.map((d) => d.code), [0]);
      assertEquals((await n.reservations(macvlanUid)).length, 0);
    } finally {
      await cleanup(r);
      await n.dispose();
    }
  },
});

Deno.test({
  name: "ipam handoff: without `static` in CNI_PATH the delegates get danm's addresses through the fakeipam client",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    try {
      const { annotation, macvlanUid } = await danmIpamNetworks(n);
      await Deno.remove(`${n.bin.dir}/static`);
      await n.createPod(`hf-${r}`, { "danm.io/interfaces": annotation });
      const sb = await n.fakelet.runPod("default", `hf-${r}`);
      assertEquals(await globalAddresses(sb.netnsName), {
        lo: [],
        eth0: ["10.233.1.1/24", "fd00:233:1::1/64"],
        hb1: ["10.233.3.1/24"],
      });
      // The same ADD needs fakeipam: with it failing, the pod's ADD fails (and is rolled back).
      await n.bin.addPlugin(
        "fakeipam",
        `#!/bin/sh\necho '{"cniVersion":"1.0.0","code":7,"msg":"deliberate fakeipam failure"}'\nexit 1\n`,
      );
      await n.createPod(`hg-${r}`, { "danm.io/interfaces": annotation });
      const failed = await n.fakelet.runPod("default", `hg-${r}`).then(() => "succeeded", (e) => String(e));
      assertEquals(/deliberate fakeipam failure/.test(failed), true, failed);
      assertEquals((await n.fakelet.stopPod("default", `hf-${r}`)).map((d) => d.code), [0]);
      assertEquals((await n.reservations(macvlanUid)).length, 0);
    } finally {
      await cleanup(r);
      await n.dispose();
    }
  },
});
