// Whereabouts v0.9.2 installed on a test apiserver as its doc/crds manifests install it: the IPPool,
// OverlappingRangeIPReservation and NodeSlicePool CRDs; ServiceAccount kube-system/whereabouts with its ClusterRole
// and binding; the flat configuration file its install-cni.sh writes (datastore kubernetes, the kubeconfig of that
// ServiceAccount, the reconciler's cron expression). Its DaemonSet's `ip-control-loop` (pod controller and
// reconciler) runs per node as an in-cluster process (startControlLoop).
import { ensureWhereabouts, type PeerBuild } from "./build.ts";
import {
  adminRest,
  applyManifests,
  type PeerCluster,
  type PeerProcess,
  readManifests,
  runInCluster,
  serviceAccountToken,
  tokenKubeconfig,
} from "./install.ts";

/** Where Whereabouts keeps its pools (the namespace of its kubeconfig's context, by default kube-system). */
export const whereaboutsNamespace = "kube-system";
const cronExpression = "30 4 * * *"; // the shipped ConfigMap's: once a day

export interface Whereabouts {
  readonly build: PeerBuild;
  /** The `whereabouts` IPAM plugin binary (for a CNI bin directory). */
  readonly plugin: string;
  /** The IPAM section of a delegate allocating from `range` (CIDR), reading the installed flat file. */
  ipam(range: string): Record<string, unknown>;
  /** ip-control-loop for one node, as the DaemonSet's container runs it. */
  startControlLoop(nodeName: string): Promise<PeerProcess>;
  /** The control loops started. */
  processes(): ReadonlyArray<PeerProcess>;
  /** Stops the control loops, removes the directory. CRDs, RBAC and pools stay. */
  stop(): Promise<void>;
}

export async function installWhereabouts(
  cluster: PeerCluster,
  opts: { readonly dir?: string } = {},
): Promise<Whereabouts> {
  const build = await ensureWhereabouts();
  const m = build.manifests;
  const manifests = [
    ...(await readManifests(`${m}/whereabouts.cni.cncf.io_ippools.yaml`)),
    ...(await readManifests(`${m}/whereabouts.cni.cncf.io_overlappingrangeipreservations.yaml`)),
    ...(await readManifests(`${m}/whereabouts.cni.cncf.io_nodeslicepools.yaml`)),
    ...(await readManifests(`${m}/daemonset-install.yaml`)).filter((d) => d.kind !== "DaemonSet"),
  ];
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "whereabouts-" });
  await Deno.mkdir(dir, { recursive: true });
  const rest = adminRest(cluster);
  const loops: PeerProcess[] = [];
  try {
    await applyManifests(rest, manifests);
    const token = await serviceAccountToken(rest, whereaboutsNamespace, "whereabouts");
    const kubeconfig = `${dir}/whereabouts.kubeconfig`;
    await Deno.writeTextFile(kubeconfig, tokenKubeconfig(cluster, "whereabouts", token));
    const flatFile = `${dir}/whereabouts.conf`;
    await Deno.writeTextFile(
      flatFile,
      JSON.stringify({
        datastore: "kubernetes",
        kubernetes: { kubeconfig },
        reconciler_cron_expression: cronExpression,
      }),
    );
    return {
      build,
      plugin: `${build.dir}/whereabouts`,
      ipam: (range) => ({ type: "whereabouts", range, configuration_path: flatFile }),
      startControlLoop: async (nodeName) => {
        const p = await runInCluster({
          name: `ip-control-loop-${nodeName}`,
          cluster,
          binary: `${build.dir}/ip-control-loop`,
          args: ["-log-level", "debug"], // the DaemonSet's arguments
          serviceAccount: { namespace: whereaboutsNamespace, token },
          files: { "/cron-schedule/config": cronExpression },
          env: { NODENAME: nodeName, WHEREABOUTS_NAMESPACE: whereaboutsNamespace },
          dir,
        });
        loops.push(p);
        return p;
      },
      processes: () => [...loops],
      stop: async () => {
        await Promise.all(loops.map((p) => p.stop()));
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
    };
  } finally {
    rest.close();
  }
}
