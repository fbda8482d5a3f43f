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

export async function multusWhereaboutsSetup(cluster: PeerCluster, nets: BenchNetworks): Promise<PeerSetup> {
  const dir = await Deno.makeTempDir({ prefix: "bench-multus-" });
  const whereabouts = await installWhereabouts(cluster);
  const multus = await installMultus(cluster);
  const rest = adminRest(cluster);
  const stop = async () => {
    await multus.stop();
    await whereabouts.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const namespace = "bench-multus";
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
    const binDir = await peerBinDir(`${dir}/bin`, { multus: multus.plugin, whereabouts: whereabouts.plugin });
    const netconf = multus.netconf({
      cniVersion: "0.3.1",
      name: "cluster",
      type: "bridge",
      bridge: nets.primary.bridge,
      ipam: { type: "host-local", subnet: nets.primary.subnet, dataDir: `${dir}/host-local` },
    }, binDir);
    return {
      label: "Multus v4.3.0 + Whereabouts v0.9.2",
      namespace,
      binDir,
      netconf,
      annotations: { [multusNetworksAnnotation]: "mv,dn" },
      whereabouts,
      processes: () => whereabouts.processes(),
      logs: () => Promise.resolve(""),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    rest.close();
  }
}
