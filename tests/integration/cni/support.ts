// One danm node on the real apiserver: the CNI node layer in this process (live Kube, netlink, process, fs and the
// unix socket listener), a CNI bin dir with the thin `danm`/`fakeipam` launchers and the reference plugins, and a
// fake kubelet execing `danm` exactly as a runtime does. The tier runs inside a private network namespace, which is
// this "node's" host namespace; pods get namespaces of their own. Everything carries a per-setup run id.
import { Effect, Exit, Layer, Scope } from "effect";
import { type Network, NetworkKinds, networkResources } from "../../../core/api/danm.ts";
import { type IPBlock, ipBlockResource, labels as ipamLabels } from "../../../core/api/ipam.ts";
import { type Pod, PodResource } from "../../../core/api/k8s.ts";
import { type CniNodeOptions, type CniNodeService, make as makeNode } from "../../../core/cni/node.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { Netlink } from "../../../core/ports/netlink.ts";
import { Fs } from "../../../core/ports/filesystem.ts";
import { Process } from "../../../core/ports/process.ts";
import { CniListener } from "../../../core/ports/cni_listener.ts";
import { makeLiveCniListener } from "../../../adapters/cniserver/live.ts";
import { makeLiveFs } from "../../../adapters/fs/live.ts";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import * as LiveNetlink from "../../../adapters/netlink/live.ts";
import { makeLiveProcess } from "../../../adapters/process/live.ts";
import { type CniBin, makeCniBin } from "../../harness/cnibin.ts";
import { type TestCluster, useCluster } from "../../harness/cluster.ts";
import { Fakelet } from "../../harness/fakelet.ts";
import { run as runCmd } from "../../harness/proc.ts";
import { installDanmCrds } from "../api/danm_crds.ts";

export interface CniNode {
  readonly run: string;
  readonly nodeName: string;
  readonly cluster: TestCluster;
  readonly kube: KubeService;
  readonly node: CniNodeService;
  readonly bin: CniBin;
  readonly fakelet: Fakelet;
  /** Static delegate configs go here (00-danm.conf's cniDir). */
  readonly cniDir: string;
  readonly tmp: string;
  readonly kubeRun: <A, E>(e: Effect.Effect<A, E, Kube>) => Promise<A>;
  readonly createNetwork: (kind: Network["kind"] & string, name: string, spec: Network["spec"]) => Promise<Network>;
  readonly createPod: (name: string, annotations: Record<string, string>) => Promise<Pod>;
  /** Reservations held on a network (by its uid). */
  readonly reservations: (networkUid: string) => Promise<ReadonlyArray<IPBlock["spec"]["reservations"][string]>>;
  readonly dispose: () => Promise<void>;
}

export interface CniNodeSetup {
  readonly cniVersion?: string;
  readonly node?: Partial<CniNodeOptions>;
  /** The caller's apiserver, which the caller releases (default: useCluster()'s). */
  readonly cluster?: TestCluster;
  readonly nodeName?: string;
  /** An existing CNI bin dir to put the launchers into (a node upgraded in place), instead of a fresh one. */
  readonly binDir?: string;
  /** An existing directory for static delegate configs (00-danm.conf's cniDir). */
  readonly cniDir?: string;
}

export async function startCniNode(opts: CniNodeSetup = {}): Promise<CniNode> {
  const cluster = opts.cluster ?? await useCluster();
  await installDanmCrds(cluster.kubeConfig);
  const run = crypto.randomUUID().slice(0, 6);
  const nodeName = opts.nodeName ?? `cni-${run}`;
  const tmp = await Deno.makeTempDir({ prefix: `danm-cni-${run}-` });
  const cniDir = opts.cniDir ?? `${tmp}/net.d`;
  if (!opts.cniDir) await Deno.mkdir(cniDir);
  const scope = Scope.makeUnsafe();
  const created: Array<{ kind: string; name: string; namespace?: string }> = [];
  let bin: CniBin | undefined;
  let fakelet: Fakelet | undefined;
  const dispose = async () => {
    await fakelet?.dispose().catch(() => {});
    const k = kube;
    if (k) {
      for (const o of created.reverse()) {
        const rt = o.kind === "Pod" ? PodResource : networkResources[o.kind as Network["kind"] & string];
        await Effect.runPromise(
          Effect.ignore(k.delete(rt as typeof PodResource, o.name, {
            ...(o.namespace ? { namespace: o.namespace } : {}),
            gracePeriodSeconds: 0,
          })),
        );
      }
    }
    await Effect.runPromise(Scope.close(scope, Exit.void));
    await bin?.dispose();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    if (!opts.cluster) await cluster.release();
  };
  let kube: KubeService | undefined;
  try {
    kube = await Effect.runPromise(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Scope.provide(scope)),
    );
    const k = kube;
    const netlink = await Effect.runPromise(LiveNetlink.make().pipe(Scope.provide(scope)));
    const socket = `${tmp}/danm.sock`;
    const layers = Layer.mergeAll(
      Layer.succeed(Kube, k),
      Layer.succeed(Netlink, netlink),
      Layer.succeed(Process, makeLiveProcess()),
      Layer.succeed(Fs, makeLiveFs()),
      Layer.succeed(CniListener, makeLiveCniListener()),
    );
    const node = await Effect.runPromise(
      makeNode({
        nodeName,
        socketPath: socket,
        stateDir: `${tmp}/sandboxes`,
        delegatePath: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
        gcGraceSeconds: 0,
        ...opts.node,
      }).pipe(Effect.provide(layers), Scope.provide(scope)),
    );
    for (let i = 0; i < 500 && (await Effect.runPromise(node.unsynced)).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    bin = await makeCniBin(opts.binDir ? { socket, dir: opts.binDir, referencePlugins: false } : { socket });
    fakelet = new Fakelet({
      nodeName,
      kube: k,
      binDir: bin.dir,
      netconf: { cniVersion: opts.cniVersion ?? "1.1.0", name: "danm_meta_cni", type: "danm", cniDir },
    });
    const kubeRun = <A, E>(e: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provideService(e, Kube, k));
    return {
      run,
      nodeName,
      cluster,
      kube: k,
      node,
      bin,
      fakelet,
      cniDir,
      tmp,
      kubeRun,
      createNetwork: async (kind, name, spec) => {
        if (!(NetworkKinds as ReadonlyArray<string>).includes(kind)) throw new Error(`not a network kind: ${kind}`);
        const namespace = kind === "ClusterNetwork" ? undefined : "default";
        const rt = networkResources[kind as Network["kind"] & string] as typeof networkResources.DanmNet;
        const obj = await Effect.runPromise(
          k.create(rt, { metadata: { name, ...(namespace ? { namespace } : {}) }, spec } as never),
        );
        created.push({ kind, name, ...(namespace ? { namespace } : {}) });
        return obj as Network;
      },
      createPod: async (name, annotations) => {
        const pod = await Effect.runPromise(k.create(PodResource, {
          metadata: { name, namespace: "default", labels: { app: name, run }, annotations },
          spec: { nodeName, containers: [{ name: "c", image: "pause" }] },
        }));
        created.push({ kind: "Pod", name, namespace: "default" });
        return pod;
      },
      reservations: async (uid) => {
        const blocks = await Effect.runPromise(
          k.list(ipBlockResource, { labelSelector: `${ipamLabels.networkUid}=${uid}` }),
        );
        return blocks.items.flatMap((b) => Object.values(b.spec.reservations));
      },
      dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** `ip -json …` inside a namespace ("" = the node's own), parsed. */
export async function ipJson(ns: string, ...args: string[]): Promise<Array<Record<string, unknown>>> {
  const out = await runCmd(ns ? ["ip", "-n", ns, "-json", ...args] : ["ip", "-json", ...args]);
  return out.trim() ? JSON.parse(out) : [];
}
