// ADD, DEL, rollback, stale sandboxes and GC of the danm CNI on the in-memory layers.
import { Effect } from "effect";
import { NetworkStatusAnnotation } from "../../../core/api/annotations.ts";
import { DanmEpResource } from "../../../core/api/danm.ts";
import { ipBlockResource } from "../../../core/api/ipam.ts";
import { NetworkAttachmentDefinitionResource, PodResource } from "../../../core/api/k8s.ts";
import { removeRecord } from "../../../core/cni/state.ts";
import { KubeUnavailable } from "../../../core/ports/kube.ts";
import { layerMemoryFs } from "../../../adapters/fs/memory.ts";
import { EpLabels, sandboxLabel } from "../../../core/cni/endpoints.ts";
import { type NetnsHandle, NetnsRef } from "../../../core/ports/netlink.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { eventually } from "../../harness/eventually.ts";
import {
  cniDir,
  cniEnv,
  createDelegatedNetwork,
  createNetwork,
  createPod,
  danmConf,
  makeWorld,
  sandbox,
  sleep,
  type World,
} from "./fixture.ts";

const removeRecordEffect = (id: string) => removeRecord("/run/danm/sandboxes", id);
const unavailable = (verb: string, kind: string) => new KubeUnavailable({ verb, kind, detail: "injected outage" });

const inPod = <A>(w: World, netns: string, f: (h: NetnsHandle) => Effect.Effect<A, unknown>) =>
  w.run(Effect.scoped(Effect.flatMap(w.netlink.netns(NetnsRef.path(netns)), f)));

const networkStatus = (w: World, pod: string) =>
  eventually(`network-status of ${pod}`, async () => {
    const got = await Effect.runPromise(w.kube.get(PodResource, pod, { namespace: "default" }));
    return got.metadata.annotations?.[NetworkStatusAnnotation];
  });

const endpointsOf = async (w: World, namespace = "default") =>
  (await Effect.runPromise(w.kube.list(DanmEpResource, { namespace }))).items;
const reservations = async (w: World) =>
  (await Effect.runPromise(w.kube.list(ipBlockResource))).items.flatMap((b) => Object.values(b.spec.reservations));

/** The delegate list the sandbox record keeps for the (first) delegated attachment: what DEL and CHECK replay. */
const recordedDelegate = (w: World, containerId: string) => {
  const record = JSON.parse(w.fs.files()[`/run/danm/sandboxes/${containerId}.json`]) as {
    attachments: Array<{ delegate?: { plugins: Array<{ ipam?: unknown }> } }>;
  };
  return record.attachments.find((a) => a.delegate)!.delegate!;
};

/** DanmNet `mv`: macvlan (built in) on ens5 (MTU 9000) with danm's IPAM on 10.30.0.0/24. */
const macvlanNetwork = (w: World) =>
  createNetwork(w, "DanmNet", "mv", {
    NetworkID: "mvnet",
    NetworkType: "macvlan",
    Options: { host_device: "ens5", cidr: "10.30.0.0/24" },
  });

async function twoIpvlanNetworks(w: World) {
  await createNetwork(w, "DanmNet", "int", {
    NetworkID: "int",
    NetworkType: "ipvlan",
    Options: {
      host_device: "ens4",
      cidr: "10.10.0.0/24",
      net6: "2001:db8:10::/64",
      container_prefix: "int",
      routes: { "10.99.0.0/16": "10.10.0.1" },
      rt_tables: 20,
    },
  });
  await createNetwork(w, "ClusterNetwork", "ext", {
    NetworkID: "ext",
    NetworkType: "ipvlan",
    Options: { host_device: "ens5", cidr: "10.20.0.0/24", mtu: 1400 },
  });
}

// DANM's isolation bug (danm-spec §5.6): a network with the NetworkID of another but its own VNI/VLAN named the other's
// host interface, and DANM put its pods there. The webhook refuses such networks; one that got in anyway (created
// while the webhook was down, or before the rule) must not get pods onto the other network's segment either.
Deno.test("ADD: a host interface of another network with the same NetworkID (other VNI, VLAN, device) is refused", async () => {
  const w = await makeWorld();
  try {
    const spec = (Options: Record<string, unknown>, NetworkType = "ipvlan") => ({
      NetworkID: "iso",
      NetworkType,
      Options: { cidr: "10.60.0.0/24", ...Options },
    });
    await createNetwork(w, "DanmNet", "owner", spec({ host_device: "ens4", vxlan: 600 }));
    await createNetwork(w, "DanmNet", "intruder", spec({ host_device: "ens4", vxlan: 700 }));
    await createNetwork(w, "DanmNet", "vlanowner", spec({ host_device: "ens4", vlan: 100 }));
    await createNetwork(w, "DanmNet", "elsewhere", spec({ host_device: "ens5", vlan: 100 }, "macvlan"));
    // What netwatcher made for the owners.
    await w.run(Effect.gen(function* () {
      yield* w.netlink.host.createLink({ kind: "vxlan", name: "vx_iso", vni: 600, dev: "ens4", port: 4789 });
      yield* w.netlink.host.createLink({ kind: "vlan", name: "iso.100", parent: "ens4", id: 100 });
    }));
    const attach = async (name: string, network: string) => {
      const pod = await createPod(w, name, { "danm.io/interfaces": JSON.stringify([{ network, ip: "dynamic" }]) });
      return await w.call("danm", cniEnv("ADD", sandbox(w), pod), danmConf("1.1.0"));
    };
    const ok = await attach("p-owner", "owner");
    assertEquals(ok.code, 0, ok.stdout);
    const vxlan = await attach("p-intruder", "intruder");
    assertEquals(vxlan.code, 1);
    assertMatch(
      String((vxlan.json as { details?: string }).details),
      /check host interface vx_iso: it is VXLAN 600 on ens4, this network needs VXLAN 700 on ens4: another network with the same NetworkID owns it/,
    );
    assertEquals(
      (await attach("p-vlanowner", "vlanowner")).code,
      0,
      "the VLAN interface's own network attaches",
    );
    const vlan = await attach("p-elsewhere", "elsewhere");
    assertMatch(
      String((vlan.json as { details?: string }).details),
      /it is VLAN 100 on ens4, this network needs VLAN 100 on ens5/,
    );
    const intruderEps = (await endpointsOf(w)).filter((e) =>
      e.spec.NetworkName === "intruder" || e.spec.NetworkName === "elsewhere"
    );
    assertEquals(intruderEps, [], "nothing of the refused pods remains");
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD: two built-in IPVLAN attachments get DANM's names, addresses, routes, rules, sysctls, DanmEps", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    const pod = await createPod(w, "p1", {
      "danm.io/interfaces": JSON.stringify([
        { network: "int", ip: "dynamic", ip6: "dynamic", proutes: { "10.50.0.0/16": "10.10.0.254" } },
        { clusterNetwork: "ext", ip: "10.20.0.7" },
        { network: "int", ip: "dynamic" },
      ]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf("1.1.0"));
    assertEquals(r.code, 0, r.stdout);
    const result = r.json as {
      interfaces: Array<{ name: string; sandbox?: string; mtu?: number }>;
      ips: Array<{ address: string; interface: number }>;
    };
    assertEquals(result.interfaces.map((i) => i.name), ["eth0", "eth1", "int2"]);
    assert(result.interfaces.every((i) => i.sandbox === sb.netns), "interfaces carry the netns as sandbox");
    assertEquals(result.ips.map((i) => i.address), [
      "10.10.0.2/24",
      "2001:db8:10::1/64",
      "10.20.0.7/24",
      "10.10.0.3/24",
    ]);
    assertEquals(result.ips.map((i) => i.interface), [0, 0, 1, 2]);

    const state = await inPod(w, sb.netns, (p) =>
      Effect.gen(function* () {
        return {
          links: yield* p.links(),
          addrs: yield* p.addresses(),
          routes: yield* p.routes({ table: "all" }),
          rules: yield* p.rules(),
          v6eth0: yield* p.sysctl("net/ipv6/conf/eth0/accept_ra"),
          dis1: yield* p.sysctl("net/ipv6/conf/eth1/disable_ipv6"),
        };
      }));
    const eth0 = state.links.find((l) => l.name === "eth0")!;
    const eth1 = state.links.find((l) => l.name === "eth1")!;
    assertEquals(eth0.kind, "ipvlan");
    assertEquals(eth0.ipvlan?.mode, "l2");
    assertEquals(eth1.mtu, 1400, "the network's mtu");
    assert(eth0.up && eth1.up, "links up");
    assert(state.addrs.some((a) => a.cidr === "2001:db8:10::1/64" && a.flags.includes("nodad")), "IPv6 without DAD");
    assertEquals(state.v6eth0, "0", "accept_ra off with IPv6");
    assertEquals(state.dis1, "1", "IPv6 off on an IPv4-only interface");
    assert(
      state.routes.some((rt) => rt.dst === "10.99.0.0/16" && rt.gateway === "10.10.0.1" && rt.table === 254),
      "network route",
    );
    assert(state.rules.some((x) => x.src === "10.10.0.0/24" && x.table === 20), "policy rule");
    assert(
      state.routes.some((rt) => rt.dst === "10.50.0.0/16" && rt.table === 20 && rt.gateway === "10.10.0.254"),
      "proute",
    );
    assertEquals(w.kernel.garps.filter((g) => g.address === "10.10.0.2").length, 1, "gratuitous ARP for IPv4");

    const eps = await endpointsOf(w);
    assertEquals(eps.length, 3);
    const ep0 = eps.find((e) => e.spec.Interface.Name === "eth0")!;
    assertEquals(ep0.metadata.name, ep0.spec.EndpointID);
    assertEquals(ep0.spec.Interface.Address, "10.10.0.2/24", "the route gateway .1 is never handed out");
    assertEquals(ep0.spec.Interface.AddressIPv6, "2001:db8:10::1/64");
    assertEquals(ep0.spec.Interface.proutes, { "10.50.0.0/16": "10.10.0.254" });
    assertEquals(ep0.spec.CID, sb.containerId);
    assertEquals(ep0.spec.netns, sb.netns);
    assertEquals(ep0.spec.Host, "node-a");
    assertEquals(ep0.spec.PodUID, pod.metadata.uid);
    assertEquals(ep0.spec.apiType, "DanmNet");
    assertEquals(ep0.metadata.labels?.app, "p1");
    assertEquals(ep0.metadata.labels?.[EpLabels.sandbox], sandboxLabel(sb.containerId));
    assertEquals(eps.find((e) => e.spec.Interface.Name === "eth1")!.spec.apiType, "ClusterNetwork");

    const status = JSON.parse(await networkStatus(w, "p1"));
    assertEquals(
      status.map((s: { name: string; interface: string; default: boolean }) => [s.name, s.interface, s.default]),
      [
        ["default/int", "eth0", true],
        ["ext", "eth1", false],
        ["default/int", "int2", false],
      ],
    );
    assertEquals(status[0].ips, ["10.10.0.2", "2001:db8:10::1"]);

    // DEL without prevResult: everything goes, twice is fine, and so is a missing namespace.
    for (let i = 0; i < 2; i++) {
      const d = await w.call("danm", cniEnv("DEL", sb, pod), danmConf("1.1.0"));
      assertEquals(d.code, 0, d.stdout);
    }
    const after = await inPod(w, sb.netns, (p) => Effect.all([p.links(), p.rules()]));
    assertEquals(after[0].map((l) => l.name), ["lo"]);
    assert(!after[1].some((x) => x.table === 20), "policy rule removed");
    assertEquals((await endpointsOf(w)).length, 0);
    assertEquals((await reservations(w)).length, 0);
    w.kernel.deleteNetns(sb.name);
    assertEquals((await w.call("danm", cniEnv("DEL", sb, pod), danmConf("1.1.0"))).code, 0);
  } finally {
    await w.dispose();
  }
});

const podLinks = (w: World, netns: string) =>
  inPod(w, netns, (p) => Effect.map(p.links(), (ls) => ls.map((l) => l.name)));

Deno.test("ADD: built-in macvlan (bridge mode on the parent, its MTU, danm's address, arp_notify), the macvlan plugin's result, no process; CHECK (its kind too), DEL", async () => {
  const w = await makeWorld();
  try {
    await macvlanNetwork(w);
    const pod = await createPod(w, "p2", { "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]) });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf("0.4.0"));
    assertEquals(r.code, 0, r.stdout);
    assertEquals(w.process.calls.map((c) => c.argv[0]), [], "no plugin process");
    const eth0 = await inPod(w, sb.netns, (p) => p.link("eth0"));
    const ens5 = await w.run(w.netlink.host.link("ens5"));
    assertEquals([eth0.kind, eth0.macvlan?.mode, eth0.mtu, eth0.parent, eth0.up], [
      "macvlan",
      "bridge",
      9000,
      ens5.index,
      true,
    ]);
    assertEquals(await inPod(w, sb.netns, (p) => p.sysctl("net/ipv4/conf/eth0/arp_notify")), "1");
    const v4 = await inPod(w, sb.netns, (p) => p.addresses({ link: "eth0", family: 4 }));
    assertEquals(v4.map((a) => [a.cidr, a.broadcast]), [["10.30.0.1/24", "10.30.0.255"]], "with brd, as the plugin");
    assertEquals(await inPod(w, sb.netns, (p) => p.sysctl("net/ipv6/conf/eth0/disable_ipv6")), "1", "DANM's sysctls");
    // What the reference macvlan plugin answered with danm's address (its interface: name, MAC, sandbox; no MTU).
    assertEquals(r.json, {
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0", mac: eth0.mac, sandbox: sb.netns }],
      ips: [{ version: "4", address: "10.30.0.1/24", interface: 0 }],
      routes: [],
      dns: {},
    });
    const [ep] = await endpointsOf(w);
    // DANM records a MAC only for device (VF) interfaces; network-status carries every interface's.
    assertEquals([ep.spec.NetworkType, ep.spec.Interface.Address, ep.spec.Interface.MacAddress], [
      "macvlan",
      "10.30.0.1/24",
      undefined,
    ]);
    const record = JSON.parse(w.fs.files()[`/run/danm/sandboxes/${sb.containerId}.json`]);
    assertEquals([record.attachments[0].backend, record.attachments[0].delegate], ["ipvlan", undefined]);
    const check = () => w.call("danm", cniEnv("CHECK", sb, pod), { ...danmConf("0.4.0"), prevResult: r.json });
    assertEquals((await check()).code, 0);
    // As the macvlan plugin's CHECK did: an eth0 with the address that is not a bridge-mode macvlan fails CHECK.
    await inPod(w, sb.netns, (p) =>
      Effect.gen(function* () {
        yield* p.deleteLink("eth0");
        yield* p.createLink({ kind: "dummy", name: "eth0" });
        yield* p.addAddress({ link: "eth0", cidr: "10.30.0.1/24" });
        yield* p.setLink("eth0", { up: true });
      }));
    const damaged = await check();
    assertEquals(damaged.code, 1);
    assertMatch(
      String((damaged.json as { details?: string }).details),
      /interface eth0 is a dummy link, not a macvlan/,
    );

    const d = await w.call("danm", cniEnv("DEL", sb, pod), { ...danmConf("0.4.0"), prevResult: r.json });
    assertEquals(d.code, 0, d.stdout);
    assertEquals(w.process.calls.length, 0, "DEL starts no process either");
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await endpointsOf(w)).length, 0);
    assertEquals((await reservations(w)).length, 0);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD: a built-in macvlan whose parent is missing fails naming it; nothing is left (link, DanmEp, reservation)", async () => {
  const w = await makeWorld();
  try {
    // A host device this node lacks: no link can be made.
    await createNetwork(w, "DanmNet", "mv", {
      NetworkID: "mvnet",
      NetworkType: "macvlan",
      Options: { host_device: "ens9", cidr: "10.30.0.0/24" },
    });
    const pod = await createPod(w, "p2r", { "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]) });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assert(r.code !== 0, r.stdout);
    assertMatch(String((r.json as { details?: string }).details), /ens9/);
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await endpointsOf(w)).length, 0);
    assertEquals((await reservations(w)).length, 0);
    assertEquals(Object.keys(w.fs.files()).filter((f) => f.includes(sb.containerId)), []);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD: a delegate starts while its addresses are being reserved, and gets them through fakeipam", async () => {
  // Block writes take 150 ms here; the delegate must be running before the first one is done.
  let blockWritten = Infinity;
  const w = await makeWorld({
    wrapKube: (k) => ({
      ...k,
      create: (rt, obj, o) =>
        rt.kind === "IPBlock"
          ? Effect.delay(k.create(rt, obj, o), "150 millis").pipe(
            Effect.tap(() => Effect.sync(() => blockWritten = Math.min(blockWritten, performance.now()))),
          )
          : k.create(rt, obj, o),
    }),
  });
  try {
    let delegateStarted = Infinity;
    const macvlan = w.process.registered("/opt/cni/bin/macvlan")!;
    w.process.register("/opt/cni/bin/macvlan", (inv) => {
      if (inv.env.CNI_COMMAND === "ADD") delegateStarted = performance.now();
      return macvlan(inv);
    });
    await createDelegatedNetwork(w, { cniVersion: "0.4.0" });
    const pod = await createPod(w, "pipe", {
      "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf("0.4.0"));
    assertEquals(r.code, 0, r.stdout);
    assert(delegateStarted < blockWritten, "the delegate ran before the reservation was written");
    const adds = w.process.calls.filter((c) => c.argv[0] === "/opt/cni/bin/macvlan" && c.env.CNI_COMMAND === "ADD");
    assertEquals(adds.length, 1);
    const conf = JSON.parse(new TextDecoder().decode(adds[0].stdin));
    // Its fakeipam section holds a ticket, which the daemon answered with the reserved address; the sandbox record
    // keeps the address itself for DEL and CHECK.
    assertMatch(conf.ipam.ticket, /^[0-9a-f-]{36}$/);
    assertEquals(conf, {
      cniVersion: "0.4.0",
      name: "mvnet",
      type: "macvlan",
      master: "ens5",
      mode: "bridge",
      ipam: { type: "fakeipam", ticket: conf.ipam.ticket },
    });
    assertEquals(recordedDelegate(w, sb.containerId).plugins[0].ipam, {
      type: "fakeipam",
      ips: [{ ipcidr: "10.30.0.1/24", version: 4 }],
    });
    assertEquals(Object.keys(adds[0].env).sort(), [
      "CNI_ARGS",
      "CNI_COMMAND",
      "CNI_CONTAINERID",
      "CNI_IFNAME",
      "CNI_NETNS",
      "CNI_PATH",
      "DANM_SOCKET",
      "PATH",
    ]);
    assertEquals(adds[0].env.CNI_IFNAME, "eth0");
    assertEquals(adds[0].env.DANM_SOCKET, "/run/danm/danm.sock");
    const addresses = await inPod(
      w,
      sb.netns,
      (p) => Effect.map(p.addresses({ link: "eth0", family: 4 }), (as) => as.map((a) => a.cidr)),
    );
    assertEquals(addresses, ["10.30.0.1/24"]);
    assertEquals((r.json as { ips: Array<{ address: string }> }).ips.map((i) => i.address), ["10.30.0.1/24"]);
    const d = await w.call("danm", cniEnv("DEL", sb, pod), { ...danmConf("0.4.0"), prevResult: r.json });
    assertEquals(d.code, 0, d.stdout);
    const dels = w.process.calls.filter((c) => c.argv[0] === "/opt/cni/bin/macvlan" && c.env.CNI_COMMAND === "DEL");
    assertEquals(dels.length, 1);
    assert(
      JSON.parse(new TextDecoder().decode(dels[0].stdin)).prevResult !== undefined,
      "the delegate's DEL gets its ADD result",
    );
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD: a reservation refused while its delegate runs fails the ADD naming the address; nothing is left", async () => {
  const w = await makeWorld();
  try {
    await createDelegatedNetwork(w);
    const holder = await createPod(w, "holder", {
      "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "10.30.0.7/24" }]),
    });
    assertEquals((await w.call("danm", cniEnv("ADD", sandbox(w), holder), danmConf())).code, 0);
    const before = (await reservations(w)).length;
    const pod = await createPod(w, "taker", {
      "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "10.30.0.7" }]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assert(r.code !== 0, r.stdout);
    const err = r.json as { code: number; msg: string; details: string };
    assertEquals(err.code, 100);
    assertMatch(err.details, /reserve addresses: .*10\.30\.0\.7.*default\/holder/);
    const adds = w.process.calls.filter((c) =>
      c.argv[0] === "/opt/cni/bin/macvlan" && c.env.CNI_COMMAND === "ADD" && c.env.CNI_CONTAINERID === sb.containerId
    );
    assertEquals(adds.length, 1, "the delegate had started");
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await endpointsOf(w)).filter((e) => e.spec.PodUID === pod.metadata.uid), []);
    assertEquals((await reservations(w)).length, before);
    assertEquals(Object.keys(w.fs.files()).filter((f) => f.includes(sb.containerId)), []);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD: a static .conflist runs as a chain (name/cniVersion injected, prevResult passed), DEL in reverse", async () => {
  const w = await makeWorld();
  try {
    const seen: string[] = [];
    w.process.register("/opt/cni/bin/echo-prev", (inv) => {
      const conf = JSON.parse(new TextDecoder().decode(inv.stdin));
      seen.push(`${inv.env.CNI_COMMAND}:${conf.name}:${conf.cniVersion}:${conf.prevResult ? "prev" : "noprev"}`);
      return Effect.succeed(inv.env.CNI_COMMAND === "ADD" ? { stdout: JSON.stringify(conf.prevResult) } : {});
    });
    w.fs.seed({
      "/opt/cni/bin/echo-prev": "",
      [`${cniDir}/chainnet.conflist`]: JSON.stringify({
        cniVersion: "1.0.0",
        name: "chain",
        plugins: [{ type: "macvlan", master: "ens4", ipam: { type: "host-local" } }, { type: "echo-prev" }],
      }),
    });
    await createNetwork(w, "DanmNet", "chained", {
      NetworkID: "chainnet",
      NetworkType: "bridge",
      Options: { cidr: "10.40.0.0/24" },
    });
    const pod = await createPod(w, "p3", {
      "danm.io/interfaces": JSON.stringify([{ network: "chained", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assertEquals(r.code, 0, r.stdout);
    const add = w.process.calls.find((c) => c.argv[0] === "/opt/cni/bin/macvlan")!;
    const conf = JSON.parse(new TextDecoder().decode(add.stdin));
    assertEquals([conf.name, conf.cniVersion], ["chain", "1.0.0"]);
    assertEquals(conf.ipam, { type: "fakeipam", ticket: conf.ipam.ticket }, "danm IPAM replaced host-local");
    assertEquals(
      recordedDelegate(w, sb.containerId).plugins[0].ipam,
      { type: "fakeipam", ips: [{ ipcidr: "10.40.0.1/24", version: 4 }] },
      "the record keeps the addresses",
    );
    assertEquals(seen, ["ADD:chain:1.0.0:prev"]);
    const d = await w.call("danm", cniEnv("DEL", sb, pod), danmConf());
    assertEquals(d.code, 0);
    const order = w.process.calls.filter((c) => c.env.CNI_COMMAND === "DEL").map((c) => c.argv[0].split("/").pop());
    assertEquals(order, ["echo-prev", "macvlan"]);
    assertEquals(seen.at(-1), "DEL:chain:1.0.0:prev", "DEL carries the cached result");
  } finally {
    await w.dispose();
  }
});

Deno.test("rollback: one failing delegate fails ADD naming it; nothing is left (interfaces, DanmEps, reservations)", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    w.fs.seed({ [`${cniDir}/broken.conf`]: JSON.stringify({ cniVersion: "1.0.0", name: "broken", type: "failing" }) });
    await createNetwork(w, "DanmNet", "bad", {
      NetworkID: "broken",
      NetworkType: "failing",
      Options: { cidr: "10.60.0.0/24" },
    });
    await createNetwork(w, "DanmNet", "mv", {
      NetworkID: "mvnet",
      NetworkType: "macvlan",
      Options: { host_device: "ens6", cidr: "10.30.0.0/24" },
    });
    const pod = await createPod(w, "p4", {
      "danm.io/interfaces": JSON.stringify([
        { network: "int", ip: "dynamic", proutes: { "10.50.0.0/16": "10.10.0.254" } },
        { network: "bad", ip: "dynamic" },
        { network: "mv", ip: "dynamic" },
      ]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assertEquals(r.code, 1);
    const err = r.json as { code: number; msg: string; details: string };
    assertEquals(err.code, 100);
    assertMatch(err.msg, /1 of 3 attachment\(s\) failed \(DanmNet default\/bad\)/);
    assertMatch(err.details, /network DanmNet default\/bad \(eth1\).*deliberate failure/);
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await inPod(w, sb.netns, (p) => p.rules())).filter((x) => x.table === 20).length, 0);
    assertEquals((await endpointsOf(w)).length, 0);
    assertEquals((await reservations(w)).length, 0);
    assert(
      w.process.calls.some((c) => c.argv[0] === "/opt/cni/bin/failing" && c.env.CNI_COMMAND === "DEL"),
      "the failed delegate got its DEL",
    );
    assertEquals(Object.keys(w.fs.files()).filter((f) => f.startsWith("/run/danm/sandboxes/")), []);
  } finally {
    await w.dispose();
  }
});

Deno.test("rollback: an attachment over its time limit is cancelled and rolled back", async () => {
  const w = await makeWorld({ attachTimeoutMs: 300 });
  try {
    await twoIpvlanNetworks(w);
    w.fs.seed({ [`${cniDir}/slow.conf`]: JSON.stringify({ cniVersion: "1.0.0", name: "slow", type: "sleeper" }) });
    await createNetwork(w, "DanmNet", "slow", { NetworkID: "slow", NetworkType: "sleeper" });
    const pod = await createPod(w, "p5", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }, { network: "slow" }]),
    });
    const sb = sandbox(w);
    const started = Date.now();
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assert(Date.now() - started < 2_000, "ADD returned soon after the time limit");
    assertEquals(r.code, 1);
    assertMatch(
      (r.json as { details: string }).details,
      /DanmNet default\/slow \(eth1\): attach: not done within 300 ms/,
    );
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await endpointsOf(w)).length, 0);
    assertEquals((await reservations(w)).length, 0);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD: every missing or forbidden network is named in one error, and nothing is created", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    await createNetwork(w, "ClusterNetwork", "private", {
      NetworkID: "private",
      AllowedTenants: ["kube-system"],
      Options: { host_device: "ens4" },
    });
    const pod = await createPod(w, "p6", {
      "danm.io/interfaces": JSON.stringify([
        { network: "int", ip: "dynamic" },
        { network: "nope" },
        { clusterNetwork: "private" },
        { tenantNetwork: "gone" },
      ]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assertEquals(r.code, 1);
    const e = r.json as { code: number; msg: string; details: string };
    assertEquals(e.code, 100);
    assertMatch(e.msg, /3 of 4 network\(s\) cannot be attached/);
    assertMatch(e.details, /DanmNet default\/nope.*does not exist/);
    assertMatch(e.details, /ClusterNetwork private.*not in the AllowedTenants/);
    assertMatch(e.details, /TenantNetwork default\/gone.*does not exist/);
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await reservations(w)).length, 0);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD: default network (DanmNet default) for a pod without annotation; a NAD through NPWG", async () => {
  const w = await makeWorld();
  try {
    await createNetwork(w, "DanmNet", "default", {
      NetworkID: "dflt",
      Options: { host_device: "ens4", cidr: "10.70.0.0/24" },
    });
    const plain = await createPod(w, "p7");
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, plain), danmConf());
    assertEquals(r.code, 0, r.stdout);
    assertEquals((r.json as { ips: Array<{ address: string }> }).ips.map((i) => i.address), ["10.70.0.1/24"]);

    await Effect.runPromise(w.kube.create(NetworkAttachmentDefinitionResource, {
      metadata: { name: "mvnad", namespace: "default" },
      spec: { config: JSON.stringify({ cniVersion: "1.0.0", type: "macvlan", master: "ens5" }) },
    }));
    const npwg = await createPod(w, "p8", { "k8s.v1.cni.cncf.io/networks": "mvnad" });
    const sb2 = sandbox(w);
    const r2 = await w.call("danm", cniEnv("ADD", sb2, npwg), danmConf());
    assertEquals(r2.code, 0, r2.stdout);
    const nadCall = w.process.calls.find((c) =>
      c.argv[0] === "/opt/cni/bin/macvlan" && c.env.CNI_CONTAINERID === sb2.containerId
    )!;
    assertEquals(
      JSON.parse(new TextDecoder().decode(nadCall.stdin)).name,
      "mvnad",
      "a NAD config without name gets the NAD's",
    );
    const eps = (await endpointsOf(w)).filter((e) => e.spec.CID === sb2.containerId);
    assertEquals(eps.length, 0, "NAD attachments have no DanmEp (svcwatcher reads network-status)");
    assertEquals(JSON.parse(await networkStatus(w, "p8"))[0].name, "default/mvnad");
    assertEquals((await w.call("danm", cniEnv("DEL", sb2, npwg), danmConf())).code, 0);
    assertEquals(await podLinks(w, sb2.netns), ["lo"], "the NAD delegate's DEL ran from the record");
  } finally {
    await w.dispose();
  }
});

Deno.test("repeated ADD for the same pod UID (no DEL in between) replaces the stale sandbox; static IP kept", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    const pod = await createPod(w, "p9", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "10.10.0.50" }]),
    });
    const first = sandbox(w), second = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", first, pod), danmConf())).code, 0);
    await sleep(50); // the node's DanmEp cache sees the first sandbox
    const r = await w.call("danm", cniEnv("ADD", second, pod), danmConf());
    assertEquals(r.code, 0, r.stdout);
    const eps = await endpointsOf(w);
    assertEquals(eps.map((e) => [e.spec.CID, e.spec.Interface.Address]), [[second.containerId, "10.10.0.50/24"]]);
    assertEquals(await podLinks(w, first.netns), ["lo"], "the stale sandbox's interface is gone");
    assertEquals((await reservations(w)).map((x) => x.sandbox), [second.containerId]);
  } finally {
    await w.dispose();
  }
});

Deno.test("DEL without a sandbox record or prevResult finds the DanmEps and frees everything", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    const pod = await createPod(w, "p10", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }, {
        clusterNetwork: "ext",
        ip: "dynamic",
      }]),
    });
    const sb = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", sb, pod), danmConf())).code, 0);
    await Effect.runPromise(Effect.provide(removeRecordEffect(sb.containerId), layerMemoryFs(w.fs)));
    await sleep(50);
    const d = await w.call("danm", cniEnv("DEL", sb, pod), danmConf("0.3.1"));
    assertEquals(d.code, 0, d.stdout);
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await endpointsOf(w)).length, 0);
    assertEquals((await reservations(w)).length, 0);
  } finally {
    await w.dispose();
  }
});

Deno.test("DEL while the apiserver is down succeeds now and finishes in the background", async () => {
  let down = false;
  const w = await makeWorld({
    retryPeriodMs: 100,
    wrapKube: (k) => ({
      ...k,
      delete: (rt, name, o) => (down ? Effect.fail(unavailable("delete", rt.kind)) : k.delete(rt, name, o)),
      update: (rt, obj, o) => (down ? Effect.fail(unavailable("update", rt.kind)) : k.update(rt, obj, o)),
    }),
  });
  try {
    await twoIpvlanNetworks(w);
    const pod = await createPod(w, "p11", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", sb, pod), danmConf())).code, 0);
    down = true;
    const d = await w.call("danm", cniEnv("DEL", sb, pod), danmConf());
    assertEquals(d.code, 0, "DEL never strands a pod in Terminating");
    assertEquals(await podLinks(w, sb.netns), ["lo"], "the local part is done at once");
    assertEquals([...await Effect.runPromise(w.node.pendingTeardowns)], [sb.containerId]);
    assertEquals((await endpointsOf(w)).length, 1);
    down = false;
    for (let i = 0; i < 100 && (await endpointsOf(w)).length > 0; i++) await sleep(20);
    assertEquals((await endpointsOf(w)).length, 0, "the retry deleted the DanmEp");
    for (let i = 0; i < 100 && (await reservations(w)).length > 0; i++) await sleep(20);
    assertEquals((await reservations(w)).length, 0, "and released the address");
    assertEquals([...await Effect.runPromise(w.node.pendingTeardowns)], []);
  } finally {
    await w.dispose();
  }
});

Deno.test("GC frees sandboxes, DanmEps and reservations not in cni.dev/valid-attachments, keeps the valid ones", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    const keep = await createPod(w, "keep", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }]),
    });
    const lose = await createPod(w, "lose", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }]),
    });
    const a = sandbox(w), b = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", a, keep), danmConf())).code, 0);
    assertEquals((await w.call("danm", cniEnv("ADD", b, lose), danmConf())).code, 0);
    await sleep(50);
    const g = await w.call("danm", cniEnv("GC", undefined), {
      ...danmConf("1.1.0"),
      "cni.dev/valid-attachments": [{ containerID: a.containerId, ifname: "eth0" }],
    });
    assertEquals(g.code, 0, g.stdout);
    assertEquals((await endpointsOf(w)).map((e) => e.spec.CID), [a.containerId]);
    assertEquals((await reservations(w)).map((r) => r.sandbox), [a.containerId]);
    assertEquals(await podLinks(w, b.netns), ["lo"]);
    assertEquals(await podLinks(w, a.netns), ["lo", "eth0"]);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD of a sandbox danm already set up (a runtime retrying) replaces it instead of failing", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    const pod = await createPod(w, "p12", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    const first = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assertEquals(first.code, 0, first.stdout);
    const again = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assertEquals(again.code, 0, again.stdout);
    assertEquals(await podLinks(w, sb.netns), ["lo", "eth0"]);
    assertEquals((await endpointsOf(w)).length, 1);
    assertEquals((await reservations(w)).length, 1);
  } finally {
    await w.dispose();
  }
});

Deno.test("sriov: without a PodResources client ADD fails with a clear error and leaves nothing", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    await createNetwork(w, "DanmNet", "vf", {
      NetworkID: "vfnet",
      NetworkType: "sriov",
      Options: { device_pool: "nokia.k8s.io/sriov_ens1f0", cidr: "10.80.0.0/24" },
    });
    const pod = await createPod(w, "p13", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }, { network: "vf", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assertEquals(r.code, 1);
    assertMatch(
      (r.json as { details: string }).details,
      /DanmNet default\/vf \(eth1\): allocate a device: .*PodResources/,
    );
    assertEquals(await podLinks(w, sb.netns), ["lo"]);
    assertEquals((await reservations(w)).length, 0);
  } finally {
    await w.dispose();
  }
});

Deno.test("sriov: with a device source, the generated config names the popped device, PF and VLAN", async () => {
  const w = await makeWorld({
    podDevices: {
      devices: () => Effect.succeed(["0000:01:00.1", "0000:01:00.2"]),
      physicalFunction: () => Effect.succeed("ens1f0"),
      driver: () => Effect.succeed("iavf"),
    },
  });
  try {
    w.process.register(
      "/opt/cni/bin/sriov",
      (inv) =>
        inv.env.CNI_COMMAND !== "ADD" ? Effect.succeed({}) : w.netlink.netns(NetnsRef.path(inv.env.CNI_NETNS)).pipe(
          Effect.flatMap((pod) => pod.createLink({ kind: "dummy", name: inv.env.CNI_IFNAME, up: true })),
          Effect.scoped,
          Effect.as({
            stdout: JSON.stringify({
              cniVersion: "1.1.0",
              interfaces: [{ name: inv.env.CNI_IFNAME, sandbox: inv.env.CNI_NETNS }],
            }),
          }),
          Effect.orDie,
        ),
    );
    w.fs.seed({ "/opt/cni/bin/sriov": "" });
    await createNetwork(w, "DanmNet", "vf", {
      NetworkID: "vfnet",
      NetworkType: "sriov",
      Options: { device_pool: "nokia.k8s.io/sriov_ens1f0", vlan: 250, cidr: "10.80.0.0/24" },
    });
    const pod = await createPod(w, "p14", { "danm.io/interfaces": JSON.stringify([{ network: "vf", ip: "dynamic" }]) });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
    assertEquals(r.code, 0, r.stdout);
    const call = w.process.calls.find((c) => c.argv[0] === "/opt/cni/bin/sriov")!;
    assertEquals(JSON.parse(new TextDecoder().decode(call.stdin)), {
      cniVersion: "1.1.0",
      name: "vfnet",
      type: "sriov",
      master: "ens1f0",
      deviceID: "0000:01:00.2",
      vlan: 250,
      ipam: { type: "fakeipam", ips: [{ ipcidr: "10.80.0.1/24", version: 4 }] },
    });
    const [ep] = await endpointsOf(w);
    assertEquals(ep.spec.Interface.DeviceID, "0000:01:00.2");
    const status = JSON.parse(await networkStatus(w, "p14"));
    assertEquals(status[0]["device-info"], { type: "pci", version: "1.1.0", pci: { "pci-address": "0000:01:00.2" } });
  } finally {
    await w.dispose();
  }
});

Deno.test("sriov DPDK: a VF on vfio-pci gets a dummy stand-in (alias = PCI, the VF's MAC, danm's address); with a VLAN the name sits on a VLAN link; DEL removes them", async () => {
  for (const vlan of [undefined, 300]) {
    const w = await makeWorld({
      podDevices: {
        devices: () => Effect.succeed(["0000:01:00.4"]),
        physicalFunction: () => Effect.succeed("ens1f0"),
        driver: () => Effect.succeed("vfio-pci"),
      },
    });
    try {
      // sriov-cni in DPDK mode moves no netdev; it reports the VF's MAC.
      w.process.register("/opt/cni/bin/sriov", (inv) =>
        Effect.succeed(
          inv.env.CNI_COMMAND !== "ADD" ? {} : {
            stdout: JSON.stringify({
              cniVersion: "1.1.0",
              interfaces: [{ name: inv.env.CNI_IFNAME, mac: "5a:11:22:33:44:55", sandbox: inv.env.CNI_NETNS }],
            }),
          },
        ));
      w.fs.seed({ "/opt/cni/bin/sriov": "" });
      await createNetwork(w, "DanmNet", "dp", {
        NetworkID: "dpnet",
        NetworkType: "sriov",
        Options: { device_pool: "intel.com/dpdk_vfs", cidr: "10.81.0.0/24", ...(vlan ? { vlan } : {}) },
      });
      const pod = await createPod(w, "p20", {
        "danm.io/interfaces": JSON.stringify([{ network: "dp", ip: "dynamic" }]),
      });
      const sb = sandbox(w);
      const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf());
      assertEquals(r.code, 0, r.stdout);
      const [ep] = await endpointsOf(w);
      const links = await inPod(w, sb.netns, (p) => p.links());
      const eth0 = links.find((l) => l.name === "eth0")!;
      assertEquals([eth0.kind, eth0.alias, eth0.up], [vlan ? "vlan" : "dummy", "0000:01:00.4", true]);
      if (vlan) {
        const parent = links.find((l) => l.index === eth0.parent)!;
        assertEquals([parent.name, parent.kind, parent.mac, eth0.vlan?.id], [
          ep.metadata.name!.slice(0, 14),
          "dummy",
          "5a:11:22:33:44:55",
          300,
        ]);
      } else assertEquals(eth0.mac, "5a:11:22:33:44:55");
      const addrs = await inPod(w, sb.netns, (p) => p.addresses({ link: "eth0", family: 4 }));
      assertEquals(addrs.map((a) => a.cidr), ["10.81.0.1/24"]);
      const d = await w.call("danm", cniEnv("DEL", sb, pod), danmConf());
      assertEquals(d.code, 0, d.stdout);
      assertEquals(await podLinks(w, sb.netns), ["lo"]);
      assertEquals((await reservations(w)).length, 0);
    } finally {
      await w.dispose();
    }
  }
});

Deno.test("naming: container_prefix + index, legacy scheme, and a name over 15 bytes refused before anything exists", async () => {
  const w = await makeWorld();
  try {
    await twoIpvlanNetworks(w);
    await createNetwork(w, "DanmNet", "longname", {
      NetworkID: "longname",
      Options: { host_device: "ens6", cidr: "10.90.0.0/24", container_prefix: "averyverylongpfx" },
    });
    const legacy = await createPod(w, "p15", {
      "danm.io/interfaces": JSON.stringify([{ clusterNetwork: "ext", ip: "dynamic" }, {
        network: "int",
        ip: "dynamic",
      }]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, legacy), danmConf("1.1.0", { namingScheme: "legacy" }));
    assertEquals(r.code, 0, r.stdout);
    assertEquals(await podLinks(w, sb.netns), ["lo", "eth0", "int"], "legacy: exactly the prefix");

    const long = await createPod(w, "p16", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }, { network: "longname", ip: "dynamic" }]),
    });
    const sb2 = sandbox(w);
    const bad = await w.call("danm", cniEnv("ADD", sb2, long), danmConf());
    assertEquals(bad.code, 1);
    const e = bad.json as { code: number; details: string };
    assertEquals(e.code, 7);
    assertMatch(e.details, /"averyverylongpfx1" is 17 bytes long/);
    assertEquals(await podLinks(w, sb2.netns), ["lo"]);
    assertEquals((await endpointsOf(w)).filter((x) => x.spec.CID === sb2.containerId).length, 0);
  } finally {
    await w.dispose();
  }
});
