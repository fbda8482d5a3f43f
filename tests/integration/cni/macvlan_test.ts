// The built-in MACVLAN backend against the reference `macvlan` plugin it replaces, on the real kernel: for every CNI
// version, the same network attached by danm (no plugin process) and by the reference plugin with `static` IPAM
// holding the same addresses (what danm's daemon ran before) on the same parent, in two pod namespaces. The CNI
// result the runtime gets must be what danm made of the plugin's answer, and the interfaces must look the same.
import { Effect } from "effect";
import { decodeResult, encodeResult, supportedVersions } from "../../../core/cni/protocol.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { kubeletCniArgs } from "../../harness/fakelet.ts";
import { netnsScope } from "../../harness/netns.ts";
import { run } from "../../harness/proc.ts";
import { ipJson, startCniNode } from "./support.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };

/** What the runtime and a user see of a pod's eth0: the link and its global addresses. */
async function eth0Of(ns: string) {
  const [link] = await ipJson(ns, "-d", "addr", "show", "dev", "eth0");
  const info = link.linkinfo as { info_kind: string; info_data: { mode: string } };
  const sysctl = async (key: string) => (await run(["ip", "netns", "exec", ns, "sysctl", "-n", key])).trim();
  return {
    kind: info.info_kind,
    mode: info.info_data.mode,
    mtu: link.mtu,
    up: (link.flags as string[]).includes("UP"),
    parent: link.link_index,
    mac: String(link.address),
    addresses: (link.addr_info as Array<{ local: string; prefixlen: number; scope: string; broadcast?: string }>)
      .filter((a) => a.scope === "global").map((a) =>
        `${a.local}/${a.prefixlen}${a.broadcast ? ` brd ${a.broadcast}` : ""}`
      ),
    arpNotify: await sysctl("net.ipv4.conf.eth0.arp_notify"),
    routes: [
      ...await ipJson(ns, "route", "show", "dev", "eth0"),
      ...await ipJson(ns, "-6", "route", "show", "dev", "eth0"),
    ].filter((r) => !String(r.dst).startsWith("fe80")).map((r) => `${r.dst} ${r.protocol} ${r.scope} ${r.prefsrc}`),
  };
}

for (const version of supportedVersions) {
  Deno.test({
    name: `built-in macvlan, CNI ${version}: the reference macvlan plugin's result and interface, no plugin process`,
    ...sanitize,
    fn: async () => {
      const n = await startCniNode({ cniVersion: version });
      const r = n.run;
      await using scope = netnsScope();
      try {
        await run(["ip", "link", "add", `mvp${r}`, "type", "veth", "peer", "name", `mvq${r}`]);
        for (const dev of [`mvp${r}`, `mvq${r}`]) await run(["ip", "link", "set", dev, "up"]);
        await n.createNetwork("DanmNet", `m-${r}`, {
          NetworkID: `m${r}`,
          NetworkType: "macvlan",
          Options: { host_device: `mvp${r}`, cidr: "10.234.0.0/24", net6: "2001:db8:234::/64", mtu: 1400 },
        });
        await n.createPod(`m-${r}`, {
          "danm.io/interfaces": JSON.stringify([{ network: `m-${r}`, ip: "dynamic", ip6: "dynamic" }]),
        });
        const sb = await n.fakelet.runPod("default", `m-${r}`);
        const mine = await eth0Of(sb.netnsName);

        // The reference plugin, as the daemon ran it: danm's generated config, the addresses through `static`, a MAC
        // asked for in CNI_ARGS as a runtime may.
        const ref = await scope.netns(`ref${r}`);
        const conf = {
          cniVersion: version,
          name: `m${r}`,
          type: "macvlan",
          master: `mvp${r}`,
          mode: "bridge",
          mtu: 1400,
          ipam: { type: "static", addresses: mine.addresses.map((a) => ({ address: a.split(" ")[0] })) },
        };
        const refAdd = await n.fakelet.exec(conf, "ADD", {
          containerId: `ref${r}`,
          netns: scope.path(ref),
          ifName: "eth0",
          args: kubeletCniArgs({ namespace: "default", name: `ref-${r}`, uid: "u" }, `ref${r}`),
        });
        assertEquals(refAdd.code, 0, refAdd.stdout + refAdd.stderr);
        const theirs = await eth0Of(ref);
        // danm's sysctls come after either (DANM's post-processing; the plugin leaves IPv6 DAD on): the addresses are
        // compared without their flags.
        assertEquals({ ...mine, mac: "" }, { ...theirs, mac: "" });
        assertEquals([mine.kind, mine.mode, mine.mtu, mine.up, mine.arpNotify], ["macvlan", "bridge", 1400, true, "1"]);
        assertEquals(mine.addresses, ["10.234.0.1/24 brd 10.234.0.255", "2001:db8:234::1/64"]);

        // What danm answered before: the plugin's result decoded, merged (one attachment) and encoded again.
        const decoded = await Effect.runPromise(decodeResult(refAdd.json));
        const expected = encodeResult({
          ...decoded,
          interfaces: decoded.interfaces.map((i) => ({ ...i, mac: mine.mac, sandbox: sb.netns })),
        }, version);
        assertEquals(sb.result, expected);

        const delegated = (plugin: string) =>
          n.node.metrics.delegates.count({ command: "ADD", plugin, result: "success" }) +
          n.node.metrics.delegates.count({ command: "ADD", plugin, result: "error" });
        assertEquals([delegated("macvlan"), delegated("static")], [0, 0], "the daemon started no plugin");

        const dels = await n.fakelet.stopPod("default", `m-${r}`);
        assertEquals(dels.map((d) => d.code), [0]);
      } finally {
        await run(["ip", "link", "del", `mvp${r}`]).catch(() => {});
        await n.dispose();
      }
    },
  });
}

Deno.test({
  name: "built-in macvlan: a MAC from CNI_ARGS (MAC=) is set as the macvlan plugin set it; DEL deletes the link",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    await using scope = netnsScope();
    try {
      await run(["ip", "link", "add", `mvp${r}`, "type", "veth", "peer", "name", `mvq${r}`]);
      for (const dev of [`mvp${r}`, `mvq${r}`]) await run(["ip", "link", "set", dev, "up"]);
      await n.createNetwork("DanmNet", `mm-${r}`, {
        NetworkID: `mm${r}`,
        NetworkType: "macvlan",
        Options: { host_device: `mvp${r}`, cidr: "10.235.0.0/24" },
      });
      const pod = await n.createPod(`mm-${r}`, {
        "danm.io/interfaces": JSON.stringify([{ network: `mm-${r}`, ip: "dynamic" }]),
      });
      const ns = await scope.netns(`mm${r}`);
      const containerId = `mm${r}${"0".repeat(58)}`;
      const podRef = { namespace: "default", name: pod.metadata.name!, uid: pod.metadata.uid! };
      const env = {
        containerId,
        netns: scope.path(ns),
        ifName: "eth0",
        args: `${kubeletCniArgs(podRef, containerId)};MAC=0A-58-0A-EB-00-09`,
      };
      const [danm] = n.fakelet.plugins;
      const add = await n.fakelet.exec(danm, "ADD", env);
      assertEquals(add.code, 0, add.stdout + add.stderr);
      const [link] = await ipJson(ns, "link", "show", "eth0");
      assertEquals(link.address, "0a:58:0a:eb:00:09");
      const result = add.json as { interfaces: Array<{ mac: string }> };
      assertEquals(result.interfaces[0].mac, "0a:58:0a:eb:00:09");
      const del = await n.fakelet.exec({ ...danm, prevResult: add.json }, "DEL", env);
      assertEquals(del.code, 0, del.stdout);
      assert((await ipJson(ns, "link", "show")).every((l) => l.ifname === "lo"), "DEL deleted eth0");
    } finally {
      await run(["ip", "link", "del", `mvp${r}`]).catch(() => {});
      await n.dispose();
    }
  },
});
