// `deno task sim --real [path…]`: the scenario on real things — a real etcd + kube-apiserver, the webhook,
// svcwatcher, and per node a network namespace with the node agent (netwatcher + CNI daemon) and a fake kubelet
// that creates a netns per pod and calls the danm CNI through the CNI protocol exactly as a runtime would
// (tests/harness/stack.ts). It finishes with pings over each secondary network. Needs root; it runs in a private
// network and mount namespace so nothing it creates outlives it.
//
// `--kubelet` runs it on real nodes instead (tests/harness/node/cluster.ts): kubelet + containerd + kube-proxy per
// node, the real scheduler and controllers, danm installed with `kubectl apply -k` from its images; the scenario's
// containers run the pause image (there is no registry), and `-o json` gives each node's kubelet and runtime version.
//
// The nodes' NICs are veths: `ens3` (the underlay, addressed) and `ens4` (spare, for macvlan). The host kernel has
// no ipvlan or 802.1Q vlan, so such networks fail here (the kernel test tier covers them in a QEMU guest); the
// bundled k8s/examples/real.yaml uses macvlan, bridge and VXLAN.
import { Effect, Schema } from "effect";
import { layerLiveFs } from "../../adapters/fs/live.ts";
import { defaultDelegateConfig } from "../../adapters/sim/embedded.ts";
import { ClusterNetwork, DanmEpResource, DanmNet, TenantNetwork } from "../../core/api/danm.ts";
import { EndpointsResource } from "../../core/api/k8s.ts";
import { Kube } from "../../core/ports/kube.ts";
import { status as networkStatus } from "../../core/ctl/commands.ts";
import { renderTable } from "../../core/ctl/table.ts";
import { renderOutcome, type SimOutcome, type SimPod } from "../../core/sim/report.ts";
import { defaultNodes, loadScenario } from "../../core/sim/scenario.ts";
import { ensureK8sBinaries, startApiServer } from "./apiserver.ts";
import { ensureCniPlugins } from "./cniplugins.ts";
import { isolated } from "./isolate.ts";
import { prepareNodeBinaries } from "./node/binaries.ts";
import { onRealNodes } from "./node/sim.ts";
import { ensureAptPackages } from "./prereq.ts";
import { repoRoot } from "./proc.ts";
import { type Json, type PodLink, type Refusal, type Stack, startStack } from "./stack.ts";

const isolatedEnv = "DANM_SIM_ISOLATED";

export interface Ping {
  readonly network: string;
  readonly from: string;
  readonly to: string;
  readonly address: string;
  readonly ok: boolean;
}

const log = (s: string) => console.error(`[sim --real] ${s}`);

export async function runReal(paths: ReadonlyArray<string>, json: boolean, kubelet = false): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("sim --real needs root (network namespaces, links, a private mount namespace)");
    return 2;
  }
  if (!Deno.env.get(isolatedEnv)) {
    await ensureAptPackages(["ip", "openssl", "unshare", "nsenter", "ping"], log);
    log(`kube-apiserver + etcd in ${await ensureK8sBinaries()}`);
    log(`reference CNI plugins in ${await ensureCniPlugins()}`);
    if (kubelet) await prepareNodeBinaries(log);
  }
  const outside = await isolated(isolatedEnv, `${repoRoot}/cmd/sim.ts`, Deno.args);
  if (outside !== undefined) return outside;

  const scenario = await Effect.runPromise(
    loadScenario(paths.length ? paths : [`${repoRoot}/k8s/examples/real.yaml`]).pipe(Effect.provide(layerLiveFs)),
  );
  const errors = scenario.errors.map((e) => e.message);
  const nodeNames = scenario.objects.filter((o) => o.kind === "Node").map((o) => o.name);
  // Delegate configs of static-type networks, and the bridges they need joined across the nodes.
  const cniConfigs: Record<string, string> = {};
  const bridges = new Set<string>();
  let k = 0;
  for (const o of scenario.objects) {
    const schema = o.kind === "DanmNet"
      ? DanmNet
      : o.kind === "TenantNetwork"
      ? TenantNetwork
      : o.kind === "ClusterNetwork"
      ? ClusterNetwork
      : undefined;
    if (!schema) continue;
    const decoded = Schema.decodeUnknownResult(schema)(o.raw);
    if (decoded._tag === "Failure") continue; // admission reports it
    const conf = defaultDelegateConfig(decoded.success, ++k);
    if (!conf) continue;
    const { isGateway: _g, ...real } = conf;
    if (typeof real.bridge === "string") bridges.add(real.bridge);
    cniConfigs[`${decoded.success.spec.NetworkID ?? o.name}.conf`] = JSON.stringify(real);
  }

  const target = kubelet
    ? await onRealNodes({
      nodes: nodeNames.length ? nodeNames : [...defaultNodes],
      cniConfigs,
      bridges: [...bridges],
      log,
    })
    : await onFakeKubelets({
      nodes: nodeNames.length ? nodeNames : [...defaultNodes],
      cniConfigs,
      bridges: [...bridges],
      log,
    });
  try {
    log(`cluster up: ${target.nodeNames.join(", ")}`);
    const objects = scenario.objects.filter((o) => o.kind !== "Node").map((o) => o.raw as Json);
    const rejected = (await target.apply(objects)).map((r) => {
      const [kind, ref] = r.object.split(" ");
      const [namespace, name] = ref.includes("/") ? ref.split("/") : [undefined, ref];
      return { kind, ...(namespace ? { namespace } : {}), name, reason: r.message, source: "" };
    });
    const settled = await target.settle(120_000);
    const eps = await target.kubeRun(Effect.gen(function* () {
      const kube = yield* Kube;
      return (yield* kube.list(DanmEpResource)).items;
    }));
    const pods: SimPod[] = [];
    for (const p of settled) {
      if (!p.running) {
        pods.push({ ...p, owner: "", status: "Failed", error: "not Running/Ready in time", interfaces: [] });
        continue;
      }
      const links = await target.podLinks(p.namespace, p.name);
      pods.push({
        namespace: p.namespace,
        name: p.name,
        node: p.node,
        owner: "",
        status: "Running",
        interfaces: [...links].sort((a, b) =>
          a.name === "eth0" ? -1 : b.name === "eth0" ? 1 : a.name.localeCompare(b.name, "en")
        ).map((l) => {
          const ep = eps.find((e) =>
            e.metadata.namespace === p.namespace && e.spec.Pod === p.name && e.spec.Interface.Name === l.name
          );
          return {
            name: l.name,
            network: ep?.spec.NetworkName ?? "",
            kind: ep?.spec.apiType || (ep ? "DanmNet" : ""),
            type: l.kind,
            ips: [...l.addresses],
            routes: [],
          };
        }),
      });
    }
    // Pings over each secondary network: every running pod to every other one on that network.
    const pings: Ping[] = [];
    const byNetwork = new Map<string, Array<{ pod: SimPod; address: string }>>();
    for (const pod of pods.filter((p) => p.status === "Running")) {
      for (const i of pod.interfaces) {
        if (i.name === "eth0" || !i.network) continue;
        const key = `${i.kind} ${i.network}`;
        for (const a of i.ips) byNetwork.set(key, [...(byNetwork.get(key) ?? []), { pod, address: a.split("/")[0] }]);
      }
    }
    for (const [network, members] of byNetwork) {
      for (const src of members) {
        for (const dst of members) {
          if (src.pod === dst.pod || src.address.includes(":") !== dst.address.includes(":")) continue;
          const ok = await target.ping(src.pod.namespace, src.pod.name, dst.address);
          pings.push({
            network,
            from: `${src.pod.namespace}/${src.pod.name}`,
            to: `${dst.pod.namespace}/${dst.pod.name}`,
            address: dst.address,
            ok,
          });
        }
      }
    }
    const endpoints = await target.kubeRun(Effect.gen(function* () {
      const kube = yield* Kube;
      return (yield* kube.list(EndpointsResource)).items;
    }));
    const services = endpoints.filter((e) => e.metadata.labels?.["endpoints.danm.io/managed-by"]).map((e) => ({
      namespace: e.metadata.namespace ?? "",
      name: e.metadata.name ?? "",
      networks: [],
      endpoints: (e.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => a.ip)),
      notReady: (e.subsets ?? []).flatMap((s) => (s.notReadyAddresses ?? []).map((a) => a.ip)),
      ports: (e.subsets ?? []).flatMap((s) => (s.ports ?? []).map((p) => p.port)),
    }));
    const nodes = (await target.nodes()).map(({ hostLinks, ...n }) => ({
      ...n,
      hostInterfaces: hostLinks.filter((l) => /^vx_|\.\d+$/.test(l)).map((name) => ({
        name,
        kind: name.startsWith("vx_") ? "vxlan" : "vlan",
      })),
    }));
    const networks = await target.kubeRun(networkStatus);
    const outcome: SimOutcome & { pings: Ping[] } = { pods, nodes, services, networks, rejected, errors, pings };
    const failedPings = pings.filter((p) => !p.ok).length;
    if (json) console.log(JSON.stringify(outcome, null, 2));
    else {
      console.log(renderOutcome(outcome));
      console.log(
        `\nPINGS OVER SECONDARY NETWORKS (${pings.length - failedPings}/${pings.length} answered)\n` +
          renderTable(
            ["NETWORK", "FROM", "TO", "ADDRESS", "ANSWER"],
            pings.map((p) => [p.network, p.from, p.to, p.address, p.ok ? "yes" : "NO"]),
          ),
      );
    }
    log("tearing down");
    await target.teardown();
    return errors.length > 0 || failedPings > 0 || pods.some((p) => p.status === "Failed") ? 1 : 0;
  } finally {
    await target.stop();
  }
}

/** What the report needs of a real cluster: the stack of fake kubelets, or real nodes (--kubelet). */
export interface RealTarget {
  readonly nodeNames: ReadonlyArray<string>;
  /** Creates the objects in order; refusals are collected, not thrown. */
  apply(objects: ReadonlyArray<Json>): Promise<ReadonlyArray<Refusal>>;
  /** Waits (up to timeoutMs) for the scenario's pods; each with its node and whether it runs. */
  settle(timeoutMs: number): Promise<Array<{ namespace: string; name: string; node: string; running: boolean }>>;
  podLinks(namespace: string, name: string): Promise<ReadonlyArray<PodLink>>;
  ping(namespace: string, name: string, address: string): Promise<boolean>;
  /** Each node's links (host interfaces), and what else the report says of it. */
  nodes(): Promise<Array<{ name: string; hostLinks: ReadonlyArray<string> } & Record<string, unknown>>>;
  kubeRun<A, E>(e: Effect.Effect<A, E, Kube>): Promise<A>;
  teardown(): Promise<void>;
  stop(): Promise<void>;
}

export interface TargetOptions {
  readonly nodes: ReadonlyArray<string>;
  /** Static delegate configurations for every node's CNI configuration directory. */
  readonly cniConfigs: Readonly<Record<string, string>>;
  /** Bridges joined across the nodes (bridge delegates). */
  readonly bridges: ReadonlyArray<string>;
  readonly log: (line: string) => void;
}

/** The fake kubelets of tests/harness/stack.ts on a real apiserver. */
async function onFakeKubelets(o: TargetOptions): Promise<RealTarget> {
  o.log("starting etcd + kube-apiserver");
  const api = await startApiServer();
  let stack: Stack;
  try {
    stack = await startStack(api, {
      nodes: o.nodes,
      cniConfigs: o.cniConfigs,
      nodeBridges: o.bridges,
      onLog: () => {},
    });
  } catch (e) {
    await api.stop();
    throw e;
  }
  return {
    nodeNames: stack.nodes.map((n) => n.name),
    apply: async (objects) => (await stack.apply(objects)).refused,
    settle: async (timeoutMs) => {
      const running = await stack.waitForPods({ timeoutMs }).catch((e) => {
        o.log(`not every pod came up: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
        return [];
      });
      const names = new Set(running.map((p) => `${p.metadata.namespace}/${p.metadata.name}`));
      return stack.pods().map((p) => {
        const sb = stack.sandbox(p.namespace, p.name);
        return { ...p, node: sb?.node ?? "", running: names.has(`${p.namespace}/${p.name}`) && sb !== undefined };
      });
    },
    podLinks: (namespace, name) => stack.podLinks(namespace, name),
    ping: (namespace, name, address) => stack.ping(namespace, name, address, 2),
    nodes: () =>
      Promise.all(stack.nodes.map(async (n) => ({ name: n.name, hostLinks: await stack.nodeLinks(n.name) }))),
    kubeRun: (e) => stack.kubeRun(e),
    teardown: async () => {
      await stack.teardown();
    },
    stop: async () => {
      await stack.stop();
      await api.stop();
      await Deno.remove(api.dir, { recursive: true }).catch(() => {});
    },
  };
}
