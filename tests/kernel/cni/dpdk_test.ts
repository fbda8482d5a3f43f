// DPDK VFs on a real kernel (the guest has dummy and 802.1Q): a VF bound to vfio-pci has no netdev, so danm puts a
// dummy stand-in into the pod — alias = PCI address, the VF's MAC, danm's address — on a VLAN link when the network
// has a VLAN. The VF's driver and PF come from a sysfs-shaped tree through the live adapter; sriov-cni is a
// stand-in that, as in DPDK mode, moves nothing and reports the VF's MAC.
import { Effect, Exit, Scope } from "effect";
import { ClusterNetworkResource, DanmEpResource } from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { makePodResourcesDevices } from "../../../adapters/kubelet/podresources.ts";
import { assertEquals } from "../../harness/assert.ts";
import { addrs, conf, links, setup } from "./support.ts";

const vf = "0000:3b:02.1";

Deno.test("DPDK (guest): vfio-pci VF → dummy with alias, MAC and address; with a VLAN, a VLAN link on it; DEL", async () => {
  const sysfs = await Deno.makeTempDir({ prefix: "danm-sysfs-" });
  const bin = await Deno.makeTempDir({ prefix: "danm-kbin-" });
  const scope = Scope.makeUnsafe();
  try {
    const dev = `${sysfs}/bus/pci/devices`;
    await Deno.mkdir(`${dev}/0000:3b:00.0/net/ens2f0`, { recursive: true });
    await Deno.mkdir(`${sysfs}/bus/pci/drivers/vfio-pci`, { recursive: true });
    await Deno.mkdir(`${dev}/${vf}`, { recursive: true });
    await Deno.symlink("../0000:3b:00.0", `${dev}/${vf}/physfn`);
    await Deno.symlink("../../../bus/pci/drivers/vfio-pci", `${dev}/${vf}/driver`);
    const sysfsDevices = await Effect.runPromise(
      Scope.provide(makePodResourcesDevices({ socket: `${sysfs}/none.sock`, sysfsRoot: sysfs }), scope),
    );
    await Deno.writeTextFile(
      `${bin}/sriov`,
      [
        "#!/bin/sh",
        "cat >/dev/null",
        'if [ "$CNI_COMMAND" = ADD ]; then',
        `  printf '{"cniVersion":"1.1.0","interfaces":[{"name":"%s","mac":"5a:3b:02:01:00:01","sandbox":"%s"}]}' "$CNI_IFNAME" "$CNI_NETNS"`,
        "fi",
        "",
      ].join("\n"),
    );
    await Deno.chmod(`${bin}/sriov`, 0o755);
    const e = await setup({
      podDevices: { ...sysfsDevices, devices: () => Effect.succeed([vf]) },
    });
    try {
      for (const vlan of [undefined, 401]) {
        const net = `dpdk${vlan ?? 0}`;
        await Effect.runPromise(e.kube.create(ClusterNetworkResource, {
          metadata: { name: net },
          spec: {
            NetworkID: net,
            NetworkType: "sriov",
            Options: { device_pool: "intel.com/dpdk", cidr: "10.252.1.0/24", ...(vlan ? { vlan } : {}) },
          },
        }));
        const name = `dp-${e.run}-${vlan ?? 0}`;
        const pod = await Effect.runPromise(e.kube.create(PodResource, {
          metadata: {
            name,
            namespace: "default",
            annotations: { "danm.io/interfaces": JSON.stringify([{ clusterNetwork: net, ip: "dynamic" }]) },
          },
          spec: { nodeName: "guest", containers: [{ name: "c" }] },
        }));
        const ns = await e.scope.netns("kdp");
        const env = {
          CNI_COMMAND: "ADD",
          CNI_CONTAINERID: `${name}${"0".repeat(30)}`,
          CNI_NETNS: e.scope.path(ns),
          CNI_IFNAME: "eth0",
          CNI_PATH: bin,
          CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_UID=${pod.metadata.uid}`,
        };
        const r = await e.call(env, conf);
        assertEquals(r.code, 0, r.stdout);
        const shown = JSON.parse(await e.scope.exec(ns, "ip", "-d", "-j", "link", "show")) as Array<{
          ifname: string;
          ifalias?: string;
          address: string;
          flags: string[];
          link?: string;
          linkinfo?: { info_kind: string; info_data?: { id?: number } };
        }>;
        const eth0 = shown.find((l) => l.ifname === "eth0")!;
        assertEquals(eth0.ifalias, vf);
        assertEquals(eth0.flags.includes("UP"), true);
        const [ep] = (await Effect.runPromise(e.kube.list(DanmEpResource))).items;
        if (vlan) {
          const parent = ep.metadata.name!.slice(0, 14);
          assertEquals([eth0.linkinfo?.info_kind, eth0.linkinfo?.info_data?.id, eth0.link], ["vlan", vlan, parent]);
          const dummy = shown.find((l) => l.ifname === parent)!;
          assertEquals([dummy.linkinfo?.info_kind, dummy.address, dummy.ifalias], ["dummy", "5a:3b:02:01:00:01", vf]);
        } else {
          assertEquals([eth0.linkinfo?.info_kind, eth0.address], ["dummy", "5a:3b:02:01:00:01"]);
        }
        const a = (await addrs(e.scope, ns)).find((x) => x.ifname === "eth0")!;
        assertEquals(a.addr_info.filter((x) => x.scope === "global").map((x) => `${x.local}/${x.prefixlen}`), [
          "10.252.1.1/24",
        ]);
        assertEquals(ep.spec.Interface.DeviceID, vf);
        const d = await e.call({ ...env, CNI_COMMAND: "DEL" }, conf);
        assertEquals(d.code, 0, d.stdout);
        assertEquals((await links(e.scope, ns)).map((l) => l.ifname), ["lo"]);
        assertEquals((await Effect.runPromise(e.kube.list(DanmEpResource))).items.length, 0);
        await Effect.runPromise(e.kube.delete(ClusterNetworkResource, net));
      }
    } finally {
      await e.dispose();
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void));
    await Deno.remove(sysfs, { recursive: true }).catch(() => {});
    await Deno.remove(bin, { recursive: true }).catch(() => {});
  }
});
