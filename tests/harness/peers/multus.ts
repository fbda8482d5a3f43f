// Multus v4.3.0 (thin plugin) installed on a test apiserver as deployments/multus-daemonset.yml installs it: the
// NetworkAttachmentDefinition CRD, ServiceAccount kube-system/multus with its ClusterRole and binding, and on the
// node the `multus` binary with a configuration like the ConfigMap's (`delegates`: the cluster network, and a
// kubeconfig of that ServiceAccount, as its entrypoint generates it). Secondary networks are NADs named in the pod
// annotation `k8s.v1.cni.cncf.io/networks`; Multus runs their delegates one after the other.
import { ensureMultus, type PeerBuild } from "./build.ts";
import {
  adminRest,
  applyManifests,
  type PeerCluster,
  readManifests,
  serviceAccountToken,
  tokenKubeconfig,
} from "./install.ts";

export const multusNetworksAnnotation = "k8s.v1.cni.cncf.io/networks";
export const nadGroup = "k8s.cni.cncf.io";

export interface Multus {
  readonly build: PeerBuild;
  /** The thin `multus` binary (for a CNI bin directory). */
  readonly plugin: string;
  /**
   * The runtime's network configuration: Multus with `clusterNetwork` as its one delegate (the pod's eth0), its
   * kubeconfig, and its state and bin directories (`binDir`: the CNI bin directory the runtime uses).
   */
  netconf(clusterNetwork: Readonly<Record<string, unknown>>, binDir: string): Record<string, unknown>;
  /** The NAD body for namespace/name with this CNI configuration. */
  nad(namespace: string, name: string, config: Readonly<Record<string, unknown>>): Record<string, unknown>;
  stop(): Promise<void>;
}

export async function installMultus(cluster: PeerCluster, opts: { readonly dir?: string } = {}): Promise<Multus> {
  const build = await ensureMultus();
  const kinds = new Set(["CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"]);
  const manifests = (await readManifests(`${build.manifests}/multus-daemonset.yml`)).filter((m) => kinds.has(m.kind));
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "multus-" });
  await Deno.mkdir(`${dir}/state`, { recursive: true });
  const rest = adminRest(cluster);
  try {
    await applyManifests(rest, manifests);
    const kubeconfig = `${dir}/multus.kubeconfig`;
    await Deno.writeTextFile(
      kubeconfig,
      tokenKubeconfig(cluster, "multus", await serviceAccountToken(rest, "kube-system", "multus")),
    );
    return {
      build,
      plugin: `${build.dir}/multus`,
      netconf: (clusterNetwork, binDir) => ({
        cniVersion: "0.3.1",
        name: "multus-cni-network",
        type: "multus",
        kubeconfig,
        cniDir: `${dir}/state`,
        binDir,
        delegates: [clusterNetwork],
      }),
      nad: (namespace, name, config) => ({
        apiVersion: `${nadGroup}/v1`,
        kind: "NetworkAttachmentDefinition",
        metadata: { name, namespace },
        spec: { config: JSON.stringify(config) },
      }),
      stop: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
    };
  } finally {
    rest.close();
  }
}
