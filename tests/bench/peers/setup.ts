// The real peers set up for the same pods the benches give danm — a primary bridge + host-local attachment and two
// networks with cluster-wide IPAM (MACVLAN, bridge), same CIDRs, same MACVLAN parent and bridges — each in a
// namespace of its own, for the same fake kubelet to drive (in-process for bench:cni, on netns nodes for
// bench:scale):
//
//   - DANM v4.3.0: a MACVLAN ClusterNetwork (its generated delegate config, DANM's IPAM through its fakeipam), a
//     static bridge `.conf` with host-local, a static bridge `.conf` whose addresses DANM's IPAM assigns (its
//     IPVLAN needs a kernel module the host lacks);
//   - Multus v4.3.0 (thin) + Whereabouts v0.9.2: the cluster network bridge + host-local (eth0) and two NADs,
//     MACVLAN and bridge, both allocating from Whereabouts.
import { createDanmGoClusterNetwork, danmGoInterfacesAnnotation, installDanmGo } from "../../harness/peers/danm_go.ts";
import { adminRest, peerBinDir, type PeerCluster, type PeerProcess } from "../../harness/peers/install.ts";
import { installMultus, multusNetworksAnnotation, nadGroup } from "../../harness/peers/multus.ts";
import { installWhereabouts, type Whereabouts } from "../../harness/peers/whereabouts.ts";
import type { NodeCluster } from "../../harness/node/cluster.ts";
import type { Rest } from "../../integration/api/rest.ts";

/** The networks every system gets. */
export interface BenchNetworks {
  /** MACVLAN parent (in the namespace the plugins run in). */
  readonly hostDevice: string;
  /** bridge + host-local (the pod's eth0 for Multus). */
  readonly primary: { readonly bridge: string; readonly subnet: string };
  /** MACVLAN, cluster-wide IPAM. */
  readonly macvlanCidr: string;
  /** bridge, cluster-wide IPAM. */
  readonly secondary: { readonly bridge: string; readonly cidr: string };
}

export interface PeerSetup {
  readonly label: string;
  readonly namespace: string;
  /** CNI_PATH and the network configuration a runtime on the node uses. */
  readonly binDir: string;
  readonly netconf: Readonly<Record<string, unknown>>;
  readonly annotations: Record<string, string>;
  /** Whereabouts, when the peer uses it (its ip-control-loop runs per node). */
  readonly whereabouts?: Whereabouts;
  /** The peer's long-running processes (its webhook, Whereabouts' control loops), for CPU accounting. */
  processes(): ReadonlyArray<PeerProcess>;
  /** What the peer logged last, for a failure's message. */
  logs(): Promise<string>;
  stop(): Promise<void>;
}

async function post(rest: Rest, path: string, body: unknown): Promise<void> {
  const r = await rest.call("POST", path, body);
  if (r.status !== 201 && r.status !== 409) throw new Error(`POST ${path}: ${JSON.stringify(r.body)}`);
}

const namespaceObject = (name: string) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } });

export async function danmGoSetup(cluster: PeerCluster, nets: BenchNetworks): Promise<PeerSetup> {
  const danm = await installDanmGo(cluster);
  const rest = adminRest(cluster);
  try {
    const namespace = "bench-danm-go";
    await post(rest, "/api/v1/namespaces", namespaceObject(namespace));
    await danm.writeStaticConf("benchbr", {
      cniVersion: "0.3.1",
      name: "benchbr",
      type: "bridge",
      bridge: nets.primary.bridge,
      ipam: { type: "host-local", subnet: nets.primary.subnet, dataDir: `${danm.cniDir}/host-local` },
    });
    await danm.writeStaticConf("benchdn", {
      cniVersion: "0.3.1",
      name: "benchdn",
      type: "bridge",
      bridge: nets.secondary.bridge,
    });
    const networks = [
      {
        name: "mv",
        spec: {
          NetworkID: "benchmv",
          NetworkType: "macvlan",
          Options: { host_device: nets.hostDevice, cidr: nets.macvlanCidr },
        },
      },
      { name: "br", spec: { NetworkID: "benchbr", NetworkType: "bridge", Options: {} } },
      { name: "dn", spec: { NetworkID: "benchdn", NetworkType: "bridge", Options: { cidr: nets.secondary.cidr } } },
    ];
    for (const n of networks) await createDanmGoClusterNetwork(rest, n.name, n.spec);
    const annotation = JSON.stringify([
      { clusterNetwork: "mv", ip: "dynamic" },
      { clusterNetwork: "br" },
      { clusterNetwork: "dn", ip: "dynamic" },
    ]);
    return {
      label: "DANM v4.3.0",
      namespace,
      binDir: danm.binDir,
      netconf: danm.netconf,
      annotations: { [danmGoInterfacesAnnotation]: annotation },
      processes: () => [danm.webhook],
      logs: () => danm.logs(10),
      stop: () => danm.stop(),
    };
  } catch (e) {
    await danm.stop();
    throw e;
  } finally {
    rest.close();
  }
}

/** Multus + Whereabouts installed on `cluster`, with the bench's two NADs (MACVLAN, bridge) in `namespace`. */
async function multusWhereaboutsNetworks(
  cluster: PeerCluster,
  nets: Omit<BenchNetworks, "primary">,
  namespace: string,
) {
  const whereabouts = await installWhereabouts(cluster);
  const multus = await installMultus(cluster);
  const rest = adminRest(cluster);
  const stop = async () => {
    await multus.stop();
    await whereabouts.stop();
  };
  try {
    await post(rest, "/api/v1/namespaces", namespaceObject(namespace));
    const nads = `/apis/${nadGroup}/v1/namespaces/${namespace}/network-attachment-definitions`;
    await post(
      rest,
      nads,
      multus.nad(namespace, "mv", {
        cniVersion: "0.3.1",
        name: "mv",
        type: "macvlan",
        master: nets.hostDevice,
        ipam: whereabouts.ipam(nets.macvlanCidr),
      }),
    );
    await post(
      rest,
      nads,
      multus.nad(namespace, "dn", {
        cniVersion: "0.3.1",
        name: "dn",
        type: "bridge",
        bridge: nets.secondary.bridge,
        ipam: whereabouts.ipam(nets.secondary.cidr),
      }),
    );
    const setup: Omit<PeerSetup, "binDir" | "netconf"> = {
      label: "Multus v4.3.0 + Whereabouts v0.9.2",
      namespace,
      annotations: { [multusNetworksAnnotation]: "mv,dn" },
      whereabouts,
      processes: () => whereabouts.processes(),
      logs: async () => (await Promise.all(whereabouts.processes().map((p) => p.log(10)))).join("\n"),
      stop,
    };
    return { multus, whereabouts, setup };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    rest.close();
  }
}

export async function multusWhereaboutsSetup(cluster: PeerCluster, nets: BenchNetworks): Promise<PeerSetup> {
  const dir = await Deno.makeTempDir({ prefix: "bench-multus-" });
  const { multus, whereabouts, setup } = await multusWhereaboutsNetworks(cluster, nets, "bench-multus");
  const stop = async () => {
    await setup.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const binDir = await peerBinDir(`${dir}/bin`, { multus: multus.plugin, whereabouts: whereabouts.plugin });
    const netconf = multus.netconf({
      cniVersion: "0.3.1",
      name: "cluster",
      type: "bridge",
      bridge: nets.primary.bridge,
      ipam: { type: "host-local", subnet: nets.primary.subnet, dataDir: `${dir}/host-local` },
    }, binDir);
    return { ...setup, binDir, netconf, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The real-node cluster as the peers' installers see it: what runs on the nodes reaches the apiserver at this URL. */
const onNodes = (c: NodeCluster): PeerCluster => ({
  url: c.internalUrl,
  kubeconfigPath: c.kubeconfigPath,
  pki: c.api.pki,
});

/**
 * Multus + Whereabouts on the real-node cluster, as their manifests install them on a node: `multus` and
 * `whereabouts` in every node's CNI bin directory, Multus' configuration first in its CNI configuration directory
 * (`00-multus.conf`, so the runtime uses it) with the node's own primary network as its delegate (what Multus'
 * entrypoint generates from the first configuration it finds), its state in the node's /var/lib/cni/multus;
 * kubeconfigs of their ServiceAccounts pointing at the apiserver's address on the nodes' network. Whereabouts'
 * ip-control-loop runs once per node as a host process (an in-cluster identity, chroot; not a pod: the harness
 * builds no image for it).
 */
export async function multusWhereaboutsOnNodes(
  cluster: NodeCluster,
  nets: Omit<BenchNetworks, "primary">,
  namespace: string,
): Promise<Omit<PeerSetup, "binDir" | "netconf">> {
  const peerCluster = onNodes(cluster);
  const { multus, whereabouts, setup } = await multusWhereaboutsNetworks(peerCluster, nets, namespace);
  try {
    await cluster.installCniPlugin("multus", multus.plugin);
    await cluster.installCniPlugin("whereabouts", whereabouts.plugin);
    await cluster.writeCniConfig("00-multus.conf", async (node) => {
      const primary = JSON.parse(
        await Deno.readTextFile(`${node.dir}/etc-cni-net.d/${cluster.primaryNetwork}.conf`),
      );
      return JSON.stringify({
        ...multus.netconf(primary, "/opt/cni/bin"),
        cniVersion: primary.cniVersion,
        cniDir: "/var/lib/cni/multus",
      });
    });
    await Promise.all(cluster.nodes.map((n) => whereabouts.startControlLoop(n.name)));
    return setup;
  } catch (e) {
    await setup.stop();
    throw e;
  }
}

/**
 * DANM v4.3.0 on the real-node cluster, as its manifests install it on a node: `danm` and `fakeipam` in every
 * node's CNI bin directory, `00-danm.conf` first in its CNI configuration directory (which is also DANM's cniDir, as
 * shipped), its kubeconfig of ServiceAccount kube-system/danm at the nodes' apiserver address; its webhook (host
 * process, in-cluster identity, registered by URL). The networks of bench:scale as DANM ClusterNetworks: the node's
 * primary network (a static bridge `.conf` per node, CNI 0.3.1 — DANM speaks no later version — on the node's own
 * subnet, eth0), MACVLAN on ens4 and a static bridge `.conf`, both with DANM's IPAM. The nodes must have been
 * started after danm_go.ts privateVarLog() (DANM's CNI appends to /var/log/danm.log).
 */
export async function danmGoOnNodes(
  cluster: NodeCluster,
  nets: Omit<BenchNetworks, "primary">,
  namespace: string,
): Promise<Omit<PeerSetup, "binDir" | "netconf">> {
  for (const n of cluster.nodes) {
    if (!(await cluster.nodeExec(n.name, ["cat", "/proc/self/mountinfo"])).includes(" danm-peers-log ")) {
      throw new Error(`${n.name} has no private /var/log for DANM's danm.log: start the nodes after privateVarLog()`);
    }
  }
  const peerCluster = onNodes(cluster);
  const danm = await installDanmGo(peerCluster);
  const rest = adminRest(peerCluster);
  try {
    await cluster.installCniPlugin("danm", `${danm.build.dir}/danm`);
    await cluster.installCniPlugin("fakeipam", `${danm.build.dir}/fakeipam`);
    const nodeDir = "/etc/cni/net.d";
    await cluster.writeCniConfig("danmpods.conf", async (node) => {
      const primary = JSON.parse(
        await Deno.readTextFile(`${node.dir}/etc-cni-net.d/${cluster.primaryNetwork}.conf`),
      );
      return JSON.stringify({ ...primary, cniVersion: "0.3.1", name: "danmpods" });
    });
    await cluster.writeCniConfig(
      "danmdn.conf",
      JSON.stringify({ cniVersion: "0.3.1", name: "danmdn", type: "bridge", bridge: nets.secondary.bridge }),
    );
    await cluster.writeCniConfig("00-danm.conf", JSON.stringify({ ...danm.netconf, cniDir: nodeDir }));
    await post(rest, "/api/v1/namespaces", namespaceObject(namespace));
    const networks = [
      { name: "br", spec: { NetworkID: "danmpods", NetworkType: "bridge", Options: {} } },
      {
        name: "mv",
        spec: {
          NetworkID: "danmmv",
          NetworkType: "macvlan",
          Options: { host_device: nets.hostDevice, cidr: nets.macvlanCidr },
        },
      },
      { name: "dn", spec: { NetworkID: "danmdn", NetworkType: "bridge", Options: { cidr: nets.secondary.cidr } } },
    ];
    for (const n of networks) await createDanmGoClusterNetwork(rest, n.name, n.spec);
    return {
      label: "DANM v4.3.0",
      namespace,
      annotations: {
        [danmGoInterfacesAnnotation]: JSON.stringify([
          { clusterNetwork: "br" },
          { clusterNetwork: "mv", ip: "dynamic" },
          { clusterNetwork: "dn", ip: "dynamic" },
        ]),
      },
      processes: () => [danm.webhook],
      logs: () => danm.logs(10),
      stop: () => danm.stop(),
    };
  } catch (e) {
    await danm.stop();
    throw e;
  } finally {
    rest.close();
  }
}
