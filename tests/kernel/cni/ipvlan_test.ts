// The built-in IPVLAN backend on a real kernel with ipvlan, 802.1Q and VXLAN (the QEMU guest; the host kernel lacks
// ipvlan). No apiserver in the guest: the node handler runs on the in-memory Kube layer with the live netlink,
// process and filesystem layers, driven with the thin client's requests. The parents netwatcher would create on a
// node (`<NetworkID>.<vlan>`, `vx_<NetworkID>`) are created here by the test. iproute2 is the independent observer.
import { Effect } from "effect";
import { ClusterNetworkResource, DanmEpResource, type NetworkSpec } from "../../../core/api/danm.ts";
import { ipBlockResource } from "../../../core/api/ipam.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { ping } from "../../harness/netns.ts";
import { run } from "../../harness/proc.ts";
import { addrs, conf, type Env, links, setup } from "./support.ts";

async function addPod(e: Env, name: string, network: string, extra: Record<string, unknown>[] = []) {
  const pod = await Effect.runPromise(e.kube.create(PodResource, {
    metadata: {
      name,
      namespace: "default",
      annotations: {
        "danm.io/interfaces": JSON.stringify([{ clusterNetwork: network, ip: "dynamic", ip6: "dynamic" }, ...extra]),
      },
    },
    spec: { nodeName: "guest", containers: [{ name: "c" }] },
  }));
  const ns = await e.scope.netns("kpod");
  const containerId = `${name}${"0".repeat(30)}`;
  const env = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: containerId,
    CNI_NETNS: e.scope.path(ns),
    CNI_IFNAME: "eth0",
    CNI_PATH: "/nonexistent",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_UID=${pod.metadata.uid}`,
  };
  const r = await e.call(env, conf);
  assertEquals(r.code, 0, r.stdout);
  return { ns, env, result: r.json };
}

const txPackets = async (dev: string) => {
  const out = await run(["ip", "-s", "-j", "link", "show", dev]);
  return (JSON.parse(out)[0].stats64?.tx?.packets ?? 0) as number;
};

async function createNetwork(e: Env, name: string, spec: NetworkSpec) {
  await Effect.runPromise(e.kube.create(ClusterNetworkResource, { metadata: { name }, spec }));
}

/** ADDs two pods on the network, checks the ipvlans (mode l2, parent, MTU, addresses without DAD, sysctls, gARP), pings, DELs. */
async function exercise(e: Env, network: string, parent: string, v4: string, v6: string, mtu: number) {
  const before = await txPackets(parent);
  const a = await addPod(e, `a-${e.run}-${network}`, network);
  const b = await addPod(e, `b-${e.run}-${network}`, network);
  const la = await links(e.scope, a.ns);
  const eth0 = la.find((l) => l.ifname === "eth0");
  assert(eth0, `no eth0 in ${JSON.stringify(la)}`);
  assertEquals(eth0.linkinfo?.info_kind, "ipvlan");
  assertEquals(eth0.linkinfo?.info_data?.mode, "l2");
  assertEquals(eth0.mtu, mtu);
  assert(eth0.flags.includes("UP"), "eth0 up");
  const hostParent = JSON.parse(await run(["ip", "-j", "link", "show", parent]))[0] as { ifindex: number };
  assertEquals(eth0.link_index, hostParent.ifindex, "the ipvlan sits on the parent");
  const aa = (await addrs(e.scope, a.ns)).find((x) => x.ifname === "eth0")!.addr_info.filter((x) =>
    x.scope === "global"
  );
  assertEquals(aa.map((x) => `${x.local}/${x.prefixlen}`), [`${v4}.1/24`, `${v6}::1/64`]);
  assert(!aa.some((x) => x.tentative), "IPv6 usable at once (no DAD)");
  assertEquals((await e.scope.exec(a.ns, "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra")).trim(), "0");
  assertEquals((await e.scope.exec(a.ns, "cat", "/proc/sys/net/ipv6/conf/eth0/autoconf")).trim(), "0");
  assertEquals((await e.scope.exec(a.ns, "cat", "/proc/sys/net/ipv6/conf/eth0/ndisc_notify")).trim(), "1");
  assert((await txPackets(parent)) > before, "the gratuitous ARPs left through the parent");
  assert(await ping(a.ns, `${v4}.2`), "a pings b over IPv4 (ipvlan l2, same parent)");
  assert(await ping(a.ns, `${v6}::2`), "a pings b over IPv6");
  for (const p of [a, b]) {
    const d = await e.call({ ...p.env, CNI_COMMAND: "DEL" }, conf);
    assertEquals(d.code, 0, d.stdout);
    assertEquals((await links(e.scope, p.ns)).map((l) => l.ifname), ["lo"]);
  }
  assertEquals((await Effect.runPromise(e.kube.list(DanmEpResource))).items.length, 0);
  const blocks = (await Effect.runPromise(e.kube.list(ipBlockResource))).items;
  assertEquals(blocks.flatMap((x) => Object.values(x.spec.reservations)).length, 0);
}

Deno.test("ipvlan (guest): over a plain host_device", async () => {
  const e = await setup();
  const parent = `kp${e.run}`;
  try {
    await run(["ip", "link", "add", parent, "mtu", "1400", "type", "dummy"]);
    await run(["ip", "link", "set", parent, "up"]);
    await createNetwork(e, "plain", {
      NetworkID: "plain",
      NetworkType: "ipvlan",
      Options: { host_device: parent, cidr: "10.251.1.0/24", net6: "2001:db8:251:1::/64" },
    });
    await exercise(e, "plain", parent, "10.251.1", "2001:db8:251:1", 1400);
  } finally {
    await run(["ip", "link", "del", parent]).catch(() => {});
    await e.dispose();
  }
});

Deno.test("ipvlan (guest): over <NetworkID>.<vlan>, with the network's MTU", async () => {
  const e = await setup();
  const nic = `kq${e.run}`, id = `kv${e.run}`, vlanIf = `${id}.300`;
  try {
    await run(["ip", "link", "add", nic, "type", "dummy"]);
    await run(["ip", "link", "set", nic, "up"]);
    await run(["ip", "link", "add", "link", nic, "name", vlanIf, "type", "vlan", "id", "300"]);
    await run(["ip", "link", "set", vlanIf, "up"]);
    await createNetwork(e, "tagged", {
      NetworkID: id,
      NetworkType: "ipvlan",
      Options: { host_device: nic, vlan: 300, mtu: 1300, cidr: "10.251.2.0/24", net6: "2001:db8:251:2::/64" },
    });
    await exercise(e, "tagged", vlanIf, "10.251.2", "2001:db8:251:2", 1300);
  } finally {
    await run(["ip", "link", "del", nic]).catch(() => {});
    await e.dispose();
  }
});

Deno.test("ipvlan (guest): over vx_<NetworkID>; a missing parent fails ADD cleanly", async () => {
  const e = await setup();
  const nic = `kr${e.run}`, id = `kx${e.run}`, vx = `vx_${id}`;
  try {
    await run(["ip", "link", "add", nic, "type", "dummy"]);
    await run(["ip", "link", "set", nic, "up"]);
    await run(["ip", "addr", "add", "192.168.251.1/24", "dev", nic]);
    await run([
      "ip",
      "link",
      "add",
      vx,
      "type",
      "vxlan",
      "id",
      "600",
      "dev",
      nic,
      "dstport",
      "4789",
      "local",
      "192.168.251.1",
      "remote",
      "192.168.251.2",
    ]);
    await run(["ip", "link", "set", vx, "up"]);
    await createNetwork(e, "overlay", {
      NetworkID: id,
      NetworkType: "ipvlan",
      Options: { host_device: nic, vxlan: 600, cidr: "10.251.3.0/24", net6: "2001:db8:251:3::/64" },
    });
    const vxMtu = (JSON.parse(await run(["ip", "-j", "link", "show", vx]))[0] as { mtu: number }).mtu;
    await exercise(e, "overlay", vx, "10.251.3", "2001:db8:251:3", vxMtu);

    await createNetwork(e, "nowhere", {
      NetworkID: "nowhere",
      NetworkType: "ipvlan",
      Options: { vlan: 9, cidr: "10.251.4.0/24" },
    });
    const pod = await Effect.runPromise(e.kube.create(PodResource, {
      metadata: {
        name: `m-${e.run}`,
        namespace: "default",
        annotations: {
          "danm.io/interfaces": JSON.stringify([{ clusterNetwork: "overlay", ip: "dynamic" }, {
            clusterNetwork: "nowhere",
            ip: "dynamic",
          }]),
        },
      },
      spec: { nodeName: "guest", containers: [{ name: "c" }] },
    }));
    const ns = await e.scope.netns("kmiss");
    const r = await e.call({
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: `miss${e.run}`,
      CNI_NETNS: e.scope.path(ns),
      CNI_IFNAME: "eth0",
      CNI_PATH: "/nonexistent",
      CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=m-${e.run};K8S_POD_UID=${pod.metadata.uid}`,
    }, conf);
    assertEquals(r.code, 1);
    assert(/find host device nowhere\.9/.test((r.json as { details: string }).details), r.stdout);
    assertEquals((await links(e.scope, ns)).map((l) => l.ifname), ["lo"], "eth0 rolled back");
  } finally {
    await run(["ip", "link", "del", nic]).catch(() => {});
    await e.dispose();
  }
});
