// A device_pool (SR-IOV) attachment through the node daemon on the real apiserver: the VF comes from the kubelet's
// PodResources API (the kubelet's own server code), its PF from a sysfs-shaped tree, and the sriov delegate is a
// stand-in for sriov-cni (no VFs on this machine) that records the config danm generated and puts a veth end into
// the pod under the interface name danm chose.
import { Effect, Exit, Scope } from "effect";
import { NetworkStatusAnnotation } from "../../../core/api/annotations.ts";
import { DanmEpResource } from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { makePodResourcesDevices } from "../../../adapters/kubelet/podresources.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { CniCallFailed } from "../../harness/fakelet.ts";
import { startPodResources } from "../../harness/podresources.ts";
import { ipJson, startCniNode } from "./support.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };
const pool = "nokia.k8s.io/sriov_ens1f0";

/** sriov-cni's part, minus the hardware: record the config; ADD puts a veth end named $CNI_IFNAME in the pod. */
const fakeSriov = (recordDir: string) =>
  [
    "#!/bin/sh",
    "conf=$(cat)",
    `printf '%s' "$conf" > '${recordDir}'/"$CNI_COMMAND-$CNI_IFNAME.json"`,
    `version=$(printf '%s' "$conf" | sed -n 's/.*"cniVersion":"\\([^"]*\\)".*/\\1/p')`,
    'ns=$(basename "$CNI_NETNS")',
    'if [ "$CNI_COMMAND" = ADD ]; then',
    '  ip link add "vf$$" type veth peer name "$CNI_IFNAME" netns "$ns" >&2 || exit 1',
    '  printf \'{"cniVersion":"%s","interfaces":[{"name":"%s","sandbox":"%s"}]}\' "$version" "$CNI_IFNAME" "$CNI_NETNS"',
    'elif [ "$CNI_COMMAND" = DEL ]; then',
    '  ip -n "$ns" link del "$CNI_IFNAME" 2>/dev/null',
    "fi",
    "exit 0",
    "",
  ].join("\n");

Deno.test({
  name: "sriov device_pool: the last VF the kubelet lists goes to sriov with its PF and VLAN; DanmEp, status; DEL",
  ...sanitize,
  fn: async () => {
    await using kubelet = await startPodResources();
    const sysfs = await Deno.makeTempDir({ prefix: "danm-sysfs-" });
    const devices = `${sysfs}/bus/pci/devices`;
    await Deno.mkdir(`${devices}/0000:81:00.0/net/ens1f0`, { recursive: true });
    for (const vf of ["0000:81:10.1", "0000:81:10.2"]) {
      await Deno.mkdir(`${devices}/${vf}`, { recursive: true });
      await Deno.symlink("../0000:81:00.0", `${devices}/${vf}/physfn`);
    }
    const scope = Scope.makeUnsafe();
    const podDevices = await Effect.runPromise(
      Scope.provide(makePodResourcesDevices({ socket: kubelet.socket, sysfsRoot: sysfs }), scope),
    );
    const n = await startCniNode({ node: { podDevices } });
    const r = n.run;
    try {
      const record = `${n.tmp}/sriov-calls`;
      await Deno.mkdir(record);
      await n.bin.addPlugin("sriov", fakeSriov(record));
      await n.createNetwork("DanmNet", `vf-${r}`, {
        NetworkID: `vf${r}`,
        NetworkType: "sriov",
        Options: { device_pool: pool, vlan: 250, cidr: "10.232.0.0/24" },
      });
      const annotations = { "danm.io/interfaces": JSON.stringify([{ network: `vf-${r}`, ip: "dynamic" }]) };

      // A pod that did not request the resource: the kubelet lists no device for it, the ADD says so, nothing stays.
      const bare = await n.createPod(`nodev-${r}`, annotations);
      await kubelet.setPods([{ namespace: "default", name: `nodev-${r}`, uid: bare.metadata.uid!, containers: [] }]);
      const refused = await n.fakelet.runPod("default", `nodev-${r}`).then(() => undefined, (e) => e);
      assertEquals(refused instanceof CniCallFailed, true, `${refused}`);
      assertMatch((refused as CniCallFailed).message, /no \(more\) nokia.k8s.io\/sriov_ens1f0 devices/);

      const pod = await n.createPod(`sv-${r}`, annotations);
      await kubelet.setPods([{
        namespace: "default",
        name: `sv-${r}`,
        uid: pod.metadata.uid!,
        containers: [{ name: "c", devices: [{ resourceName: pool, deviceIds: ["0000:81:10.1", "0000:81:10.2"] }] }],
      }]);
      const sb = await n.fakelet.runPod("default", `sv-${r}`);
      const conf = JSON.parse(await Deno.readTextFile(`${record}/ADD-eth0.json`));
      // DANM pops from the end of the kubelet's list; the PF comes from the VF's physfn.
      assertEquals(
        { type: conf.type, name: conf.name, master: conf.master, deviceID: conf.deviceID, vlan: conf.vlan },
        { type: "sriov", name: `vf${r}`, master: "ens1f0", deviceID: "0000:81:10.2", vlan: 250 },
      );
      assertEquals(conf.ipam, { type: "fakeipam", ips: [{ ipcidr: "10.232.0.1/24", version: 4 }] });
      assertEquals((await ipJson(sb.netnsName, "link", "show", "eth0")).length, 1);
      const [ep] = (await Effect.runPromise(n.kube.list(DanmEpResource, { namespace: "default" }))).items
        .filter((e) => e.spec.PodUID === pod.metadata.uid);
      assertEquals([ep.spec.Interface.DeviceID, ep.spec.Interface.Address], ["0000:81:10.2", "10.232.0.1/24"]);
      const status = await (async () => {
        for (let i = 0; i < 100; i++) {
          const p = await Effect.runPromise(n.kube.get(PodResource, `sv-${r}`, { namespace: "default" }));
          const s = p.metadata.annotations?.[NetworkStatusAnnotation];
          if (s) return JSON.parse(s);
          await new Promise((res) => setTimeout(res, 50));
        }
        throw new Error("no network-status");
      })();
      assertEquals(status[0]["device-info"], { type: "pci", version: "1.1.0", pci: { "pci-address": "0000:81:10.2" } });

      const dels = await n.fakelet.del(sb.pod, sb.containerId, sb.netns, sb.result);
      assertEquals(dels.map((d) => d.code), [0], dels.map((d) => d.stdout).join());
      assertEquals((await ipJson(sb.netnsName, "link", "show")).map((l) => l.ifname), ["lo"]);
      const eps = (await Effect.runPromise(n.kube.list(DanmEpResource, { namespace: "default" }))).items;
      assertEquals(eps.filter((e) => e.spec.PodUID === pod.metadata.uid).length, 0);
      await n.fakelet.stopPod("default", `sv-${r}`);
    } finally {
      await n.dispose();
      await Effect.runPromise(Scope.close(scope, Exit.void));
      await Deno.remove(sysfs, { recursive: true });
    }
  },
});
