// `deno task sim --real [path…]`: the scenario on real things — a real etcd + kube-apiserver, the webhook,
// svcwatcher, and per node a network namespace with the node agent (netwatcher + CNI daemon) and a fake kubelet
// that creates a netns per pod and calls the danm CNI through the CNI protocol exactly as a runtime would
// (tests/harness/stack.ts). It finishes with pings over each secondary network. Needs root; it runs in a private
// network and mount namespace so nothing it creates outlives it.
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
import { ensureAptPackages } from "./prereq.ts";
import { repoRoot } from "./proc.ts";
import { type Json, type Stack, startStack } from "./stack.ts";

const isolatedEnv = "DANM_SIM_ISOLATED";

export interface Ping {
  readonly network: string;
  readonly from: string;
  readonly to: string;
  readonly address: string;
  readonly ok: boolean;
}

const log = (s: string) => console.error(`[sim --real] ${s}`);

export async function runReal(paths: ReadonlyArray<string>, json: boolean): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("sim --real needs root (network namespaces, links, a private mount namespace)");
    return 2;
  }
  if (!Deno.env.get(isolatedEnv)) {
    await ensureAptPackages(["ip", "openssl", "unshare", "nsenter", "ping"], log);
    log(`kube-apiserver + etcd in ${await ensureK8sBinaries()}`);
    log(`reference CNI plugins in ${await ensureCniPlugins()}`);
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

  log("starting etcd + kube-apiserver");
  const api = await startApiServer();
  let stack: Stack | undefined;
  try {
    stack = await startStack(api, {
      nodes: nodeNames.length ? nodeNames : [...defaultNodes],
      cniConfigs,
      nodeBridges: [...bridges],
      onLog: () => {},
    });
    log(`stack up: ${stack.nodes.map((n) => n.name).join(", ")}`);
    const objects = scenario.objects.filter((o) => o.kind !== "Node").map((o) => o.raw as Json);
    const applied = await stack.apply(objects);
    const rejected = applied.refused.map((r) => {
      const [kind, ref] = r.object.split(" ");
      const [namespace, name] = ref.includes("/") ? ref.split("/") : [undefined, ref];
      return { kind, ...(namespace ? { namespace } : {}), name, reason: r.message, source: "" };
    });
    const wanted = stack.pods();
    const running = await stack.waitForPods({ timeoutMs: 120_000 }).catch((e) => {
      log(`not every pod came up: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
      return [];
    });
    const runningNames = new Set(running.map((p) => `${p.metadata.namespace}/${p.metadata.name}`));
    const eps = await stack.kubeRun(Effect.gen(function* () {
      const kube = yield* Kube;
      return (yield* kube.list(DanmEpResource)).items;
    }));
    const pods: SimPod[] = [];
    for (const p of wanted) {
      const sb = stack.sandbox(p.namespace, p.name);
      if (!runningNames.has(`${p.namespace}/${p.name}`) || !sb) {
        pods.push({
          ...p,
          node: sb?.node ?? "",
          owner: "",
          status: "Failed",
          error: "not Running/Ready in time",
          interfaces: [],
        });
        continue;
      }
      const links = await stack.podLinks(p.namespace, p.name);
      pods.push({
        ...p,
        node: sb.node,
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
          const ok = await stack.ping(src.pod.namespace, src.pod.name, dst.address, 2);
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
    const endpoints = await stack.kubeRun(Effect.gen(function* () {
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
    const nodes = await Promise.all(stack.nodes.map(async (n) => ({
      name: n.name,
      hostInterfaces: (await stack!.nodeLinks(n.name)).filter((l: string) => /^vx_|\.\d+$/.test(l)).map((
        name: string,
      ) => ({
        name,
        kind: name.startsWith("vx_") ? "vxlan" : "vlan",
      })),
    })));
    const networks = await stack.kubeRun(networkStatus);
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
    await stack.teardown();
    return errors.length > 0 || failedPings > 0 || pods.some((p) => p.status === "Failed") ? 1 : 0;
  } finally {
    await stack?.stop();
    await api.stop();
    await Deno.remove(api.dir, { recursive: true }).catch(() => {});
  }
}
