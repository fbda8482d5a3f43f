// `deno task sim --real [--kubelet]`: the scenario on a real cluster instead of the in-memory layers, reported as the
// in-memory run reports (core/sim/real.ts), with pings over every secondary network.
//
// The cluster comes from the repository's test harness (tests/harness/simreal.ts): etcd + kube-apiserver (and with
// --kubelet kubelet, containerd, the scheduler and controllers) built from the Go tools module in tests/tools/k8s,
// netns nodes with danm's node agent, private network and mount namespaces. That is a development checkout's
// machinery, not something a danm image ships or could run, so it stays in tests/ and is reached here only through
// the dynamic import below, whose path the module graph does not follow: cmd/sim.ts pulls in nothing of tests/,
// and without tests/ the real mode says so and exits 2 while the in-memory sim runs as ever.
import { Effect, Schema } from "effect";
import { layerLiveFs } from "../fs/live.ts";
import { defaultDelegateConfig } from "./embedded.ts";
import { reportWarnings, type WarnedObject } from "./admission.ts";
import { policyView } from "./policies.ts";
import { ClusterNetwork, DanmEpResource, DanmNet, TenantNetwork } from "../../core/api/danm.ts";
import { EndpointsResource } from "../../core/api/k8s.ts";
import { status as networkStatus } from "../../core/ctl/commands.ts";
import { Kube, type ResourceType } from "../../core/ports/kube.ts";
import {
  managedServices,
  pingOf,
  pingProbes,
  realHostInterfaces,
  type RealOutcome,
  realPod,
  type RealPodLink,
  type RealPodState,
  renderPings,
} from "../../core/sim/real.ts";
import { renderOutcome, type SimPod } from "../../core/sim/report.ts";
import { defaultNodes, loadScenario, type ScenarioObject } from "../../core/sim/scenario.ts";

/** What the report needs of a real cluster: the harness's fake kubelets, or real nodes (--kubelet). */
export interface RealTarget {
  readonly nodeNames: ReadonlyArray<string>;
  /** Creates the objects in order; refusals ("Kind namespace/name" and why) are collected, not thrown. */
  apply(objects: ReadonlyArray<Record<string, unknown>>): Promise<ReadonlyArray<{ object: string; message: string }>>;
  /** The warnings admission gave for what `apply` created (absent: this target cannot see them). */
  warned?(): ReadonlyArray<WarnedObject>;
  /** Waits (up to timeoutMs) for the scenario's pods; each with its node and whether it runs. */
  settle(timeoutMs: number): Promise<ReadonlyArray<RealPodState>>;
  podLinks(namespace: string, name: string): Promise<ReadonlyArray<RealPodLink>>;
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

/** What the real mode takes from the test harness. */
export interface RealHarness {
  /**
   * Finds or builds what the run needs (packages, kube binaries, CNI plugins, node images with --kubelet), then
   * re-runs the command in private network and mount namespaces: outside it answers that run's exit code, inside
   * undefined ("carry on here").
   */
  readonly isolate: (kubelet: boolean, log: (line: string) => void) => Promise<number | undefined>;
  readonly start: (o: TargetOptions, kubelet: boolean) => Promise<RealTarget>;
}

/** The harness module, in a repository checkout. */
export const realHarnessModule = new URL("../../tests/harness/simreal.ts", import.meta.url);

export class RealHarnessMissing extends Schema.TaggedError<RealHarnessMissing>()("RealHarnessMissing", {
  path: Schema.String,
}) {
  override get message() {
    return `sim --real runs on the repository's test harness (real kube-apiserver, etcd and kubelet built from ` +
      `tests/tools/k8s, netns nodes, the node agents), and ${this.path} is not here: run it from a danm checkout. ` +
      `The in-memory sim (without --real) needs none of it.`;
  }
}

/** The test harness the real mode runs on, or RealHarnessMissing where tests/ is not shipped (an image). */
export async function loadRealHarness(
  module: URL = realHarnessModule,
): Promise<RealHarness | RealHarnessMissing> {
  const missing = new RealHarnessMissing({ path: module.pathname });
  const found = await Deno.stat(module).then((s) => s.isFile, () => false);
  if (!found) return missing;
  // A computed specifier on purpose: the module graph of cmd/sim.ts (what an image or `deno compile` carries)
  // must not include tests/ (checked by tests/unit/sim/shipped_test.ts).
  const specifier = module.href;
  const loaded: { readonly realHarness?: RealHarness } = await import(specifier);
  return loaded.realHarness ?? missing;
}

const log = (s: string) => console.error(`[sim --real] ${s}`);

/** Delegate configs of the scenario's static-type networks, and the bridges they need joined across the nodes. */
export function realCniConfigs(objects: ReadonlyArray<ScenarioObject>) {
  const cniConfigs: Record<string, string> = {};
  const bridges = new Set<string>();
  let k = 0;
  for (const o of objects) {
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
  return { cniConfigs, bridges: [...bridges] };
}

/** The run; its exit code: 0 when every pod runs and every ping is answered. */
export async function runReal(paths: ReadonlyArray<string>, json: boolean, kubelet: boolean): Promise<number> {
  const harness = await loadRealHarness();
  if (harness instanceof RealHarnessMissing) {
    console.error(`sim: ${harness.message}`);
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error("sim --real needs root (network namespaces, links, a private mount namespace)");
    return 2;
  }
  const outside = await harness.isolate(kubelet, log);
  if (outside !== undefined) return outside;

  const defaultScenario = new URL("../../k8s/examples/real.yaml", import.meta.url).pathname;
  const scenario = await Effect.runPromise(
    loadScenario(paths.length ? paths : [defaultScenario]).pipe(Effect.provide(layerLiveFs)),
  );
  const nodeNames = scenario.objects.filter((o) => o.kind === "Node").map((o) => o.name);
  const target = await harness.start({
    nodes: nodeNames.length ? nodeNames : [...defaultNodes],
    ...realCniConfigs(scenario.objects),
    log,
  }, kubelet);
  try {
    log(`cluster up: ${target.nodeNames.join(", ")}`);
    const outcome = await observe(target, scenario.objects, scenario.errors.map((e) => e.message));
    const failedPings = outcome.pings.filter((p) => !p.ok).length;
    if (json) console.log(JSON.stringify(outcome, null, 2));
    else console.log(`${renderOutcome(outcome)}\n\n${renderPings(outcome.pings)}`);
    log("tearing down");
    await target.teardown();
    return outcome.errors.length > 0 || failedPings > 0 || outcome.pods.some((p) => p.status === "Failed") ? 1 : 0;
  } finally {
    await target.stop();
  }
}

/** Applies the scenario on the target, waits for its pods, pings over the secondary networks, reads the outcome. */
async function observe(
  target: RealTarget,
  objects: ReadonlyArray<ScenarioObject>,
  errors: ReadonlyArray<string>,
): Promise<RealOutcome> {
  const refusals = await target.apply(
    objects.filter((o) => o.kind !== "Node").map((o) => o.raw as Record<string, unknown>),
  );
  const rejected = refusals.map((r) => {
    const [kind, ref] = r.object.split(" ");
    const [namespace, name] = ref.includes("/") ? ref.split("/") : [undefined, ref];
    return { kind, ...(namespace ? { namespace } : {}), name, reason: r.message, source: "" };
  });
  const settled = await target.settle(120_000);
  const list = <A, I>(rt: ResourceType<A, I>) =>
    target.kubeRun(Effect.gen(function* () {
      return (yield* (yield* Kube).list(rt)).items;
    }));
  const eps = await list(DanmEpResource);
  const pods: SimPod[] = [];
  for (const p of settled) pods.push(realPod(p, p.running ? await target.podLinks(p.namespace, p.name) : [], eps));
  const pings = [];
  for (const probe of pingProbes(pods)) {
    pings.push(pingOf(probe, await target.ping(probe.from.namespace, probe.from.name, probe.address)));
  }
  // The policy view, as the in-memory run builds it (adapters/sim/policies.ts), over the real apiserver.
  const policed = await target.kubeRun(Effect.flatMap(Kube, (kube) => policyView(kube, pods)));
  const warnings = reportWarnings(objects, target.warned?.() ?? []);
  const endpoints = await list(EndpointsResource);
  const nodes = (await target.nodes()).map(({ hostLinks, ...n }) => ({
    ...n,
    hostInterfaces: realHostInterfaces(hostLinks),
  }));
  return {
    pods: policed.pods,
    ...(policed.policies.length > 0 ? { policies: policed.policies } : {}),
    nodes,
    services: managedServices(endpoints),
    networks: await target.kubeRun(networkStatus),
    rejected,
    ...(warnings.length > 0 ? { warnings } : {}),
    errors: [...errors],
    pings,
  };
}
