// The danm CNI end to end on the real apiserver and host network namespaces, driven like a runtime drives it: a
// fake kubelet execs the thin `danm` client, which hands the request to the node daemon over its unix socket; the
// daemon creates the macvlan itself and execs the reference plugins (bridge, host-local) and fakeipam.
import { Effect } from "effect";
import { NetworkStatusAnnotation } from "../../../core/api/annotations.ts";
import { DanmEpResource } from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { EpLabels, sandboxLabel } from "../../../core/cni/endpoints.ts";
import { supportedVersions } from "../../../core/cni/protocol.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { CniCallFailed } from "../../harness/fakelet.ts";
import { type NetnsScope, netnsScope, ping } from "../../harness/netns.ts";
import { run } from "../../harness/proc.ts";
import { eventually } from "../../harness/eventually.ts";
import { validateError, validateResult } from "../../unit/cni/spec.ts";
import { type CniNode, ipJson, startCniNode } from "./support.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };

/** A veth pair in the node namespace, both ends up: a parent NIC with carrier for macvlan. */
async function parentNic(name: string, peer: string): Promise<void> {
  await run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer]);
  await run(["ip", "link", "set", name, "up"]);
  await run(["ip", "link", "set", peer, "up"]);
}

const addressesOf = async (ns: string) => {
  const out: Record<string, string[]> = {};
  for (const l of await ipJson(ns, "addr", "show")) {
    const infos = (l.addr_info as Array<{ family: string; local: string; prefixlen: number; scope: string }>) ?? [];
    out[String(l.ifname)] = infos.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`);
  }
  return out;
};

const sandboxEndpoints = (n: CniNode, containerId: string) =>
  Effect.runPromise(n.kube.list(DanmEpResource, {
    namespace: "default",
    labelSelector: `${EpLabels.sandbox}=${sandboxLabel(containerId)}`,
  })).then((l) => l.items);

/** The bridge plugin leaves its bridges behind on DEL, as it should (they are shared): tests remove them. */
const removeSharedLinks = async (r: string) => {
  for (const dev of [`mvp${r}`, `cbh${r}`, `cbd${r}`]) await run(["ip", "link", "del", dev]).catch(() => {});
};

/**
 * Creates pod `name` with `annotation` and ADDs it in a fresh netns, expecting the ADD to fail: checks the error is
 * spec-valid and that the rollback left only `lo` in the pod and no DanmEp; returns the error's msg and details.
 */
async function failingAdd(
  n: CniNode,
  scope: NetnsScope,
  name: string,
  annotation: unknown[],
  containerId: string,
): Promise<{ msg: string; details: string }> {
  const pod = await n.createPod(name, { "danm.io/interfaces": JSON.stringify(annotation) });
  const ns = await scope.netns(name);
  const err = await n.fakelet.add(
    { namespace: "default", name, uid: pod.metadata.uid! },
    containerId,
    scope.path(ns),
  ).then(() => undefined, (e) => e);
  assert(err instanceof CniCallFailed, `ADD should fail, got ${err}`);
  validateError(err.outcome, 100);
  assertEquals((await ipJson(ns, "link", "show")).map((l) => l.ifname), ["lo"], "rolled back before DEL");
  assertEquals((await sandboxEndpoints(n, containerId)).length, 0);
  return err.outcome.json as { msg: string; details: string };
}

/** The three networks of the acceptance test: built-in macvlan, bridge+host-local conflist, bridge with danm IPAM. */
async function threeNetworks(n: CniNode) {
  const r = n.run;
  await parentNic(`mvp${r}`, `mvq${r}`);
  const hostLocal = `${n.tmp}/host-local`;
  await Deno.writeTextFile(
    `${n.cniDir}/brh${r}.conflist`,
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `brh${r}`,
      plugins: [{
        type: "bridge",
        bridge: `cbh${r}`,
        ipam: { type: "host-local", ranges: [[{ subnet: "10.231.2.0/24" }]], dataDir: hostLocal },
      }],
    }),
  );
  // A single-plugin .conf whose host-local IPAM danm replaces with fakeipam (the pod asks for a danm address).
  await Deno.writeTextFile(
    `${n.cniDir}/brd${r}.conf`,
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `brd${r}`,
      type: "bridge",
      bridge: `cbd${r}`,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.231.99.0/24" }]], dataDir: hostLocal },
    }),
  );
  const mv = await n.createNetwork("DanmNet", `mv-${r}`, {
    NetworkID: `mv${r}`,
    NetworkType: "macvlan",
    Options: { host_device: `mvp${r}`, cidr: "10.231.1.0/24" },
  });
  const br = await n.createNetwork("DanmNet", `br-${r}`, {
    NetworkID: `brh${r}`,
    NetworkType: "bridge",
    Options: { container_prefix: "br" },
  });
  const dn = await n.createNetwork("DanmNet", `dn-${r}`, {
    NetworkID: `brd${r}`,
    NetworkType: "bridge",
    Options: {
      container_prefix: "dn",
      cidr: "10.231.3.0/24",
      routes: { "10.231.30.0/24": "10.231.3.254" },
      rt_tables: 40,
    },
  });
  const annotation = JSON.stringify([
    { network: `mv-${r}`, ip: "dynamic" },
    { network: `br-${r}` },
    { network: `dn-${r}`, ip: "dynamic", proutes: { "10.231.40.0/24": "10.231.3.253" } },
  ]);
  return { mv, br, dn, annotation };
}

Deno.test({
  name: "three attachments (macvlan built in, bridge conflist + host-local, bridge + danm IPAM): names, addresses, " +
    "routes, rules, DanmEps; two pods ping over every network; DEL removes everything",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    try {
      const nets = await threeNetworks(n);
      await n.createPod(`a-${r}`, { "danm.io/interfaces": nets.annotation });
      await n.createPod(`b-${r}`, { "danm.io/interfaces": nets.annotation });
      const a = await n.fakelet.runPod("default", `a-${r}`);
      // CHECK before the second pod joins: the reference bridge plugin's CHECK compares the bridge's MAC with the
      // one in prevResult, and a Linux bridge changes its MAC when a port with a lower one joins.
      const checks = await n.fakelet.check(a);
      assertEquals(checks.map((c) => c.code), [0], checks.map((c) => c.stdout).join());
      const b = await n.fakelet.runPod("default", `b-${r}`);
      validateResult(a.result, "1.1.0");

      const links = await ipJson(a.netnsName, "-d", "link", "show");
      const kinds = Object.fromEntries(
        links.map((l) => [l.ifname, (l.linkinfo as { info_kind?: string } | undefined)?.info_kind ?? "-"]),
      );
      assertEquals(kinds, { lo: "-", eth0: "macvlan", br1: "veth", dn2: "veth" });
      const addrA = await addressesOf(a.netnsName), addrB = await addressesOf(b.netnsName);
      assertEquals(addrA.eth0, ["10.231.1.1/24"]);
      assertEquals(addrA.dn2, ["10.231.3.1/24"], "danm's address through fakeipam, not the file's host-local range");
      assertMatch(addrA.br1[0], /^10\.231\.2\.\d+\/24$/);
      assertEquals(addrB.eth0, ["10.231.1.2/24"]);

      const main = await ipJson(a.netnsName, "route", "show");
      assert(
        main.some((x) => x.dst === "10.231.30.0/24" && x.gateway === "10.231.3.254" && x.dev === "dn2"),
        `network route in main: ${JSON.stringify(main)}`,
      );
      const rules = await ipJson(a.netnsName, "rule", "show");
      assert(
        rules.some((x) => x.src === "10.231.3.0" && x.srclen === 24 && String(x.table) === "40"),
        `ip rule from 10.231.3.0/24 lookup 40: ${JSON.stringify(rules)}`,
      );
      const t40 = await ipJson(a.netnsName, "route", "show", "table", "40");
      assert(
        t40.some((x) => x.dst === "10.231.40.0/24" && x.gateway === "10.231.3.253" && x.dev === "dn2"),
        `policy route in table 40: ${JSON.stringify(t40)}`,
      );

      const eps = await sandboxEndpoints(n, a.containerId);
      const byIf = Object.fromEntries(eps.map((e) => [e.spec.Interface.Name, e]));
      assertEquals(Object.keys(byIf).sort(), ["br1", "dn2", "eth0"]);
      assertEquals(byIf.eth0.spec.NetworkName, `mv-${r}`);
      assertEquals(byIf.eth0.spec.NetworkType, "macvlan");
      assertEquals(byIf.eth0.spec.Interface.Address, "10.231.1.1/24");
      assertEquals(byIf.br1.spec.Interface.Address, addrA.br1[0], "the delegate's own address is recorded");
      assertEquals(byIf.dn2.spec.Interface.proutes, { "10.231.40.0/24": "10.231.3.253" });
      for (const ep of eps) {
        assertEquals(ep.metadata.name, ep.spec.EndpointID);
        assertEquals([ep.spec.CID, ep.spec.netns, ep.spec.Host, ep.spec.apiType], [
          a.containerId,
          a.netns,
          n.nodeName,
          "DanmNet",
        ]);
        assertEquals(ep.metadata.labels?.app, `a-${r}`, "the pod's labels");
      }

      // network-status is written right after ADD answers.
      const pod = await eventually("network-status of pod a", async () => {
        const p = await Effect.runPromise(n.kube.get(PodResource, `a-${r}`, { namespace: "default" }));
        return p.metadata.annotations?.[NetworkStatusAnnotation] ? p : undefined;
      });
      assertEquals(pod.status?.phase, "Running");
      assertEquals(pod.status?.podIP, "10.231.1.1", "eth0's address is the pod IP");
      const status = JSON.parse(pod.metadata.annotations?.[NetworkStatusAnnotation] ?? "[]") as Array<
        { name: string; interface: string; ips: string[]; mac: string; default: boolean }
      >;
      assertEquals(status.map((s) => [s.name, s.interface, s.default]), [
        [`default/mv-${r}`, "eth0", true],
        [`default/br-${r}`, "br1", false],
        [`default/dn-${r}`, "dn2", false],
      ]);
      assertEquals(status[0].ips, ["10.231.1.1"]);
      assert(status.every((s) => /^[0-9a-f:]{17}$/.test(s.mac)), "every interface's MAC in network-status");

      for (const [ifName, target] of [["eth0", addrB.eth0[0]], ["br1", addrB.br1[0]], ["dn2", addrB.dn2[0]]]) {
        assert(await ping(a.netnsName, target.split("/")[0]), `a cannot ping b over ${ifName} (${target})`);
      }
      for (const sb of [a, b]) {
        const dels = await n.fakelet.del(sb.pod, sb.containerId, sb.netns, sb.result);
        assertEquals(dels.map((d) => d.code), [0], dels.map((d) => d.stdout).join());
        assertEquals((await ipJson(sb.netnsName, "link", "show")).map((l) => l.ifname), ["lo"]);
        assertEquals((await ipJson(sb.netnsName, "rule", "show")).filter((x) => String(x.table) === "40"), []);
        assertEquals((await sandboxEndpoints(n, sb.containerId)).length, 0);
        await n.fakelet.stopPod("default", sb.pod.name); // a second DEL, then the namespace goes
      }
      for (const net of [nets.mv, nets.dn]) {
        assertEquals((await n.reservations(net.metadata.uid!)).length, 0, `reservations left on ${net.metadata.name}`);
      }
      const hostLocal = [...Deno.readDirSync(`${n.tmp}/host-local/brh${r}`)].map((e) => e.name);
      assertEquals(hostLocal.filter((f) => f.startsWith("10.")), [], "host-local released its addresses");
      assertEquals(await ipJson("", "link", "show", "master", `cbh${r}`).catch(() => []), [], "bridge ports gone");
    } finally {
      await removeSharedLinks(r);
      await n.dispose();
    }
  },
});

Deno.test({
  name: "rollback: a failing delegate fails ADD naming its network; no interface, DanmEp or reservation remains",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    await using scope = netnsScope();
    try {
      const nets = await threeNetworks(n);
      await n.bin.addPlugin(
        "failplug",
        `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then\n  echo '{"cniVersion":"1.0.0","code":7,"msg":"deliberate failure"}'\n  exit 1\nfi\nexit 0\n`,
      );
      await Deno.writeTextFile(
        `${n.cniDir}/fail${r}.conf`,
        JSON.stringify({ cniVersion: "1.0.0", name: "f", type: "failplug" }),
      );
      await n.createNetwork("DanmNet", `bad-${r}`, { NetworkID: `fail${r}`, NetworkType: "failplug" });
      const annotation = JSON.parse(nets.annotation) as unknown[];
      annotation.splice(1, 0, { network: `bad-${r}` });
      const e = await failingAdd(n, scope, `rb-${r}`, annotation, `rb${r}${"0".repeat(56)}`);
      assertMatch(e.msg, /1 of 4 attachment\(s\) failed \(DanmNet default\/bad-/);
      assertMatch(e.details, /deliberate failure/);
      for (const net of [nets.mv, nets.dn]) assertEquals((await n.reservations(net.metadata.uid!)).length, 0);
      assertEquals(await ipJson("", "link", "show", "master", `cbh${r}`).catch(() => []), []);
    } finally {
      await removeSharedLinks(r);
      await n.dispose();
    }
  },
});

Deno.test({
  // The macvlan's reservation is refused before its interface is made (built in); the delegated attachments, started
  // alongside their own reservations (tickets), are rolled back: the pod must end up as if nothing had started.
  name: "rollback: a static address another pod holds fails ADD naming it and its holder; nothing of the pod remains",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    await using scope = netnsScope();
    try {
      const nets = await threeNetworks(n);
      await n.createPod(`hold-${r}`, {
        "danm.io/interfaces": JSON.stringify([{ network: `mv-${r}`, ip: "10.231.1.7/24" }]),
      });
      await n.fakelet.runPod("default", `hold-${r}`);
      const annotation = JSON.parse(nets.annotation) as Array<Record<string, unknown>>;
      annotation[0] = { network: `mv-${r}`, ip: "10.231.1.7" };
      const e = await failingAdd(n, scope, `take-${r}`, annotation, `tk${r}${"0".repeat(56)}`);
      assertMatch(e.details, /reserve addresses: .*10\.231\.1\.7.*default\/hold-/);
      assertEquals((await n.reservations(nets.mv.metadata.uid!)).map((x) => x.pod), [`default/hold-${r}`]);
      assertEquals((await n.reservations(nets.dn.metadata.uid!)).length, 0);
      await n.fakelet.stopPod("default", `hold-${r}`);
    } finally {
      await removeSharedLinks(r);
      await n.dispose();
    }
  },
});

for (const version of supportedVersions) {
  Deno.test({
    name: `CNI ${version} through the thin client: ADD, CHECK, GC, STATUS, VERSION, DEL are spec-valid`,
    ...sanitize,
    fn: async () => {
      const n = await startCniNode({ cniVersion: version });
      const r = n.run;
      try {
        await parentNic(`mvp${r}`, `mvq${r}`);
        await n.createNetwork("DanmNet", `v-${r}`, {
          NetworkID: `v${r}`,
          NetworkType: "macvlan",
          Options: { host_device: `mvp${r}`, cidr: "10.232.0.0/24", net6: "2001:db8:232::/64" },
        });
        await n.createPod(`v-${r}`, {
          "danm.io/interfaces": JSON.stringify([{ network: `v-${r}`, ip: "dynamic", ip6: "dynamic" }]),
        });
        const sb = await n.fakelet.runPod("default", `v-${r}`);
        validateResult(sb.result, version);
        const [check] = await n.fakelet.check(sb);
        if (version === "0.3.1") validateError(check, 1);
        else assertEquals([check.code, check.stdout], [0, ""]);
        const [gc] = await n.fakelet.gc();
        const [status] = await n.fakelet.status();
        if (version === "1.1.0") {
          assertEquals([gc.code, gc.stdout, status.code, status.stdout], [0, "", 0, ""]);
        } else {
          validateError(gc, 1);
          validateError(status, 1);
        }
        const [v] = await Promise.all(
          n.fakelet.plugins.map((p) => n.fakelet.exec({ ...p, cniVersion: version }, "VERSION", {})),
        );
        assertEquals(v.json, { cniVersion: version, supportedVersions: [...supportedVersions] });
        const dels = await n.fakelet.stopPod("default", `v-${r}`);
        assertEquals(dels.map((d) => [d.code, d.stdout]), [[0, ""]]);
      } finally {
        await run(["ip", "link", "del", `mvp${r}`]).catch(() => {});
        await n.dispose();
      }
    },
  });
}

Deno.test({
  name: "fake kubelet as a controller: pods come up and go away with the API; GC frees a sandbox whose DEL was missed",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    try {
      await parentNic(`mvp${r}`, `mvq${r}`);
      const net = await n.createNetwork("DanmNet", `gc-${r}`, {
        NetworkID: `gc${r}`,
        NetworkType: "macvlan",
        Options: { host_device: `mvp${r}`, cidr: "10.233.0.0/24" },
      });
      const annotations = { "danm.io/interfaces": JSON.stringify([{ network: `gc-${r}`, ip: "dynamic" }]) };
      n.fakelet.start();
      await n.createPod(`keep-${r}`, annotations);
      await n.createPod(`lost-${r}`, annotations);
      const running = (name: string) =>
        eventually(`${name} Running`, async () => {
          const p = await Effect.runPromise(n.kube.get(PodResource, name, { namespace: "default" }));
          return p.status?.phase === "Running" ? p : undefined;
        }, 20_000);
      await running(`keep-${r}`);
      await running(`lost-${r}`);
      assertEquals((await n.reservations(net.metadata.uid!)).length, 2);

      // The runtime loses the sandbox without a DEL (node crash): its namespace is gone, danm still holds it.
      const lost = n.fakelet.lose("default", `lost-${r}`)!;
      await run(["ip", "netns", "del", lost.netnsName]);
      const [gc] = await n.fakelet.gc();
      assertEquals([gc.code, gc.stdout], [0, ""]);
      assertEquals((await sandboxEndpoints(n, lost.containerId)).length, 0, "GC removed the lost sandbox's DanmEp");
      const left = await n.reservations(net.metadata.uid!);
      assertEquals(left.map((x) => x.pod), [`default/keep-${r}`], "GC freed only the lost sandbox's address");

      await Effect.runPromise(n.kube.delete(PodResource, `keep-${r}`, { namespace: "default" }));
      await eventually("keep's DanmEps gone", async () => {
        const keep = [...n.fakelet.sandboxes.values()].length === 0;
        const eps = await Effect.runPromise(n.kube.list(DanmEpResource, { namespace: "default" }));
        return keep && !eps.items.some((e) => e.spec.Pod === `keep-${r}`) ? true : undefined;
      }, 20_000);
      assertEquals((await n.reservations(net.metadata.uid!)).length, 0);
    } finally {
      await removeSharedLinks(r);
      await n.dispose();
    }
  },
});
