// The whole danm stack on a real apiserver, every component a real process (test-environment.md §6):
//
//   - the danm CRDs;
//   - the admission webhook (cmd/webhook.ts), registered by URL over TLS with a serving certificate from the
//     apiserver's CA (validating + mutating configurations of core/webhook/manifests.ts);
//   - svcwatcher (cmd/svcwatcher.ts), one replica;
//   - N nodes, each a network namespace with an underlay NIC `ens3` (a veth into a shared bridge with multicast
//     snooping off, addressed, the Node's InternalIP), a spare NIC `ens4` (a veth into a second shared bridge, for
//     macvlan networks), optional Linux bridges joined across nodes (for bridge CNI networks), a `Node` object, the
//     node agent (cmd/netwatcher.ts: netwatcher + CNI daemon, `ip netns exec <node> deno run …`) and a fake kubelet
//     (tests/harness/fakelet.ts, `nsenter --net=<node> deno run …`), which gives every pod a namespace of its own
//     and calls the node's CNI for it as a runtime does.
//
// The apiserver listens on loopback of the harness's namespace, which a node namespace cannot reach. Every node's
// fake kubelet process therefore also listens on 127.0.0.1:<apiserver port> in its node namespace and forwards to
// a unix socket (sockets in the filesystem cross network namespaces) served by the harness, which forwards to the
// apiserver. Kubeconfig, TLS and server name stay exactly those of the apiserver.
//
// A plain TypeScript API (no test framework): startStack → apply → waitForPods → exec/ping → teardown → stop.
// stop() kills only the processes it started and removes what it created, also after a failure. The stack adds
// bridges and veths to the current network namespace and mounts under /run/netns: run it in a private network and
// mount namespace (the test runner's tiers do).
//
// The fake kubelet's process entry point is tests/harness/fakelet_process.ts.
import * as k8s from "@kubernetes/client-node";
import { Effect, Exit, Schema, Scope } from "effect";
import { makeLiveKube } from "../../adapters/kube/live.ts";
import { NodeResource, type Pod, PodResource } from "../../core/api/k8s.ts";
import { Kube, type KubeService } from "../../core/ports/kube.ts";
import { webhookConfigurations } from "../../core/webhook/manifests.ts";
import { installDanmCrds } from "../integration/api/danm_crds.ts";
import { pick, type Rest, restClient } from "../integration/api/rest.ts";
import { makeCniBin } from "./cnibin.ts";
import { eventually } from "./eventually.ts";
import { type CniEvent, podNetnsPrefix } from "./fakelet.ts";
import {
  decodeFakeletEvent,
  fakeletArgv,
  FakeletEvent,
  FakeletReports,
  type FakeletTuning,
  forward,
} from "./fakelet_process.ts";
import { type NetnsScope, netnsScope, ping as pingIn } from "./netns.ts";
import { describe, messageOf, ObjectApplier } from "./stack_objects.ts";
import type { Pki } from "./pki.ts";
import { freePort, repoRoot, run, sleep } from "./proc.ts";

export type Json = { readonly [key: string]: unknown };

export { decodeFakeletEvent, fakeletArgv, FakeletEvent, type FakeletTuning, forward };

/** What the stack needs of a running apiserver (tests/harness/cluster.ts's TestCluster has it). */
export interface StackCluster {
  readonly url: string;
  readonly kubeconfigPath: string;
  /** The apiserver's CA: it signs the webhook's serving certificate. */
  readonly pki: Pki;
}

export interface StackOptions {
  /** Node names, or how many nodes (`node-1` …). Default 3. */
  readonly nodes?: number | ReadonlyArray<string>;
  /** Linux bridges created in every node and joined across nodes, so bridge CNI networks span the cluster. */
  readonly nodeBridges?: ReadonlyArray<string>;
  /** Files for the nodes' CNI configuration directory (00-danm.conf's cniDir): name → content. */
  readonly cniConfigs?: Readonly<Record<string, string>>;
  /** netwatcher's default VXLAN mode. Default multicast. */
  readonly vxlanMode?: "multicast" | "unicast";
  /** cniVersion of the node's 00-danm.conf. Default 1.1.0 (the fake kubelet gates on STATUS). */
  readonly cniVersion?: string;
  readonly namingScheme?: "" | "legacy";
  /** First three octets of the underlay /24. Default "10.88.0". */
  readonly underlay?: string;
  /** Gets every line the processes print, prefixed with the process name (they always go to log files). */
  readonly onLog?: (line: string) => void;
  /** For everything to come up. Default 180 s. */
  readonly startTimeoutMs?: number;
  /** How the nodes' fake kubelets set sandboxes up (parallelism, attempts, kubelet-like persistence). */
  readonly fakelet?: FakeletTuning;
  /** Node agent flags that replace the stack's defaults or add to them, e.g. `{ "reclaim-period": "5s" }`. */
  readonly agentFlags?: Readonly<Record<string, string>>;
  /** Every CNI ADD/DEL the fake kubelets run, as it starts and ends. */
  readonly onCni?: (node: string, e: CniEvent) => void;
}

export interface StackNode {
  readonly name: string;
  readonly netns: string;
  readonly underlayIp: string;
  readonly cniSocket: string;
  readonly binDir: string;
}

export interface PodSandbox {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** Name of the pod's network namespace (`ip netns` name). */
  readonly netns: string;
  readonly containerId: string;
}

export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
  readonly uid: string;
  /** The object's URL path on the apiserver. */
  readonly path: string;
}

export interface Refusal {
  /** "Kind namespace/name". */
  readonly object: string;
  readonly status: number;
  readonly message: string;
}

export interface ApplyResult {
  readonly created: ReadonlyArray<ObjectRef>;
  readonly refused: ReadonlyArray<Refusal>;
  /** Objects admitted with warnings (the apiserver's `Warning` headers: admission webhooks' warnings). */
  readonly warned: ReadonlyArray<{ kind: string; namespace?: string; name: string; warnings: ReadonlyArray<string> }>;
}

export interface PodLink {
  readonly name: string;
  /** Kernel link kind (veth, macvlan …); "" when iproute2 reports none. */
  readonly kind: string;
  /** Global addresses with prefix length. */
  readonly addresses: ReadonlyArray<string>;
}

export interface TeardownReport {
  /** Sandboxes whose CNI DEL did not exit 0, with the plugin's answer. */
  readonly delFailures: ReadonlyArray<string>;
  /** Deletions the apiserver refused until the deadline. */
  readonly refused: ReadonlyArray<Refusal>;
  /** Objects still present at the deadline. */
  readonly remaining: ReadonlyArray<string>;
}

export interface Stack extends AsyncDisposable {
  readonly run: string;
  readonly nodes: ReadonlyArray<StackNode>;
  readonly kube: KubeService;
  readonly rest: Rest;
  /** The nodes' CNI configuration directory. */
  readonly cniDir: string;
  /** Working directory: logs, sockets, per-node state. Removed by stop(). */
  readonly dir: string;
  kubeRun<A, E>(e: Effect.Effect<A, E, Kube>): Promise<A>;
  /**
   * Creates the objects in order (namespaced ones default to `default`). Workloads (Deployment, ReplicaSet,
   * StatefulSet) also get their pods `<name>-<i>`, as their controllers would; pods without a node are spread over
   * the nodes round-robin, as a scheduler would (neither controller runs). Refusals are collected, not thrown.
   */
  apply(objects: ReadonlyArray<Json>): Promise<ApplyResult>;
  /** Pods created through apply(), in creation order. */
  pods(): ReadonlyArray<{ readonly namespace: string; readonly name: string }>;
  /** Waits until the pods (default: every pod of apply()) are Running and Ready with a sandbox; returns them. */
  waitForPods(opts?: {
    readonly pods?: ReadonlyArray<{ readonly namespace: string; readonly name: string }>;
    readonly timeoutMs?: number;
  }): Promise<Pod[]>;
  sandbox(namespace: string, name: string): PodSandbox | undefined;
  /** Every sandbox the fake kubelets reported, including removed ones. */
  sandboxes(): ReadonlyArray<PodSandbox & { readonly removed: boolean }>;
  /** Runs argv inside the pod's network namespace; throws on a non-zero exit. */
  exec(namespace: string, name: string, argv: ReadonlyArray<string>): Promise<string>;
  /** True when at least one of `count` pings from inside the pod is answered. */
  ping(namespace: string, name: string, target: string, count?: number): Promise<boolean>;
  /** The pod's interfaces (without lo) as the kernel sees them. */
  podLinks(namespace: string, name: string): Promise<PodLink[]>;
  /** Link names in a node's namespace, sorted. */
  nodeLinks(node: string): Promise<string[]>;
  /**
   * Deletes every pod bound to the stack's nodes (the fake kubelets run CNI DEL and remove the namespaces), waits
   * until they are gone, then deletes what apply() created, newest first. Idempotent.
   */
  teardown(opts?: { readonly timeoutMs?: number }): Promise<TeardownReport>;
  /** The last lines of every process's log. */
  logs(lines?: number): Promise<string>;
  /** The stack's processes (webhook, svcwatcher, per node the fake kubelet and the agent), for CPU accounting. */
  processes(): ReadonlyArray<{ readonly name: string; readonly pid: number }>;
  /** Throws when a process of the stack exited on its own. */
  assertAlive(): void;
  /**
   * Sends `sig` to a process of the stack (`webhook`, `svcwatcher`, `agent-<node>`, `fakelet-<node>`) and waits
   * until it exited (SIGKILL after `graceMs` for another signal, default 10 s). It stays down until respawn().
   */
  signal(process: string, sig: Deno.Signal, graceMs?: number): Promise<void>;
  /** Starts a process that signal() stopped or that exited on its own again, with the same command line. */
  respawn(process: string): void;
  /** Processes that exited on their own (what assertAlive() throws for), with their exit codes. */
  crashed(): ReadonlyArray<{ readonly name: string; readonly code: number }>;
  /** A node more: namespace, NICs, Node object, node agent and fake kubelet; resolves when its CNI is ready. */
  addNode(name: string): Promise<StackNode>;
  /**
   * The machine is gone for good: its agent and fake kubelet are killed (-9), its pods' namespaces and its own
   * namespace vanish, and its Node object is deleted. Its pods stay in the API (deleting them is the pod garbage
   * collector's job, kube-controller-manager's, which the stack does not run).
   */
  removeNode(name: string): Promise<void>;
  /** Best-effort teardown (if none ran), then stops every process and removes namespaces, links and files. */
  stop(): Promise<void>;
}

/** Label on the stack's Node objects: the agents' peer selector. */
export const StackLabel = "danm.test/stack";

// ---- Processes --------------------------------------------------------------------------------------------------

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly status: Promise<Deno.CommandStatus>;
  exited: Deno.CommandStatus | undefined;
  stopping: boolean;
  /** `sig` (default SIGTERM), then SIGKILL after `graceMs`. */
  stop(graceMs?: number, sig?: Deno.Signal): Promise<void>;
  /** SIGKILL, synchronously (for the process's unload handler). */
  kill(): void;
}

export function spawn(
  name: string,
  argv: ReadonlyArray<string>,
  o: { logDir: string; onLog?: (line: string) => void; onStdoutLine?: (line: string) => void },
): Proc {
  const logFile = `${o.logDir}/${name}.log`;
  const log = Deno.openSync(logFile, { write: true, create: true, append: true });
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd, { args, cwd: repoRoot, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const encoder = new TextEncoder();
  const pump = async (s: ReadableStream<Uint8Array>, lines?: (l: string) => void) => {
    let partial = "";
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      log.writeSync(encoder.encode(chunk));
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      for (const l of parts) {
        lines?.(l);
        o.onLog?.(`[${name}] ${l}`);
      }
    }
  };
  const pumped = Promise.all([pump(child.stdout, o.onStdoutLine), pump(child.stderr)]).catch(() => {});
  const proc: Proc = {
    name,
    pid: child.pid,
    logFile,
    exited: undefined,
    stopping: false,
    status: child.status.then(async (s) => {
      proc.exited = s;
      await pumped;
      log.close();
      return s;
    }),
    async stop(graceMs = 10_000, sig: Deno.Signal = "SIGTERM") {
      proc.stopping = true;
      if (proc.exited) return;
      try {
        child.kill(sig);
      } catch { /* already gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited meanwhile */ }
      }, graceMs);
      await proc.status;
      clearTimeout(timer);
    },
    kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    },
  };
  return proc;
}

/** Processes that exited without being stopped. */
export const crashedProcs = (procs: ReadonlyArray<Proc>): Proc[] => procs.filter((p) => p.exited && !p.stopping);

/** Throws, naming each one and its log, when a process exited that nobody stopped. */
export function assertProcsAlive(procs: ReadonlyArray<Proc>, what: string): void {
  const dead = crashedProcs(procs);
  if (dead.length > 0) {
    throw new Error(
      `${what} process(es) exited: ${
        dead.map((p) => `${p.name} (code ${p.exited!.code}, log ${p.logFile})`).join(", ")
      }`,
    );
  }
}

/** The last lines of every process's log, under a header each. */
export async function procLogs(procs: ReadonlyArray<Proc>, lines: number): Promise<string> {
  const out: string[] = [];
  for (const p of procs) {
    const text = await Deno.readTextFile(p.logFile).catch(() => "");
    out.push(
      `--- ${p.name}${p.exited ? ` (exited ${p.exited.code})` : ""} ---`,
      ...text.trimEnd().split("\n").slice(-lines),
    );
  }
  return out.join("\n");
}

// ---- The stack ----------------------------------------------------------------------------------------------------

const IpAddrLinks = Schema.Array(Schema.Struct({
  ifname: Schema.String,
  linkinfo: Schema.optionalKey(Schema.Struct({ info_kind: Schema.optionalKey(Schema.String) })),
  addr_info: Schema.optionalKey(Schema.Array(Schema.Struct({
    local: Schema.String,
    prefixlen: Schema.Number,
    scope: Schema.optionalKey(Schema.String),
  }))),
}));
const decodeIpAddrLinks = Schema.decodeUnknownSync(IpAddrLinks);

/**
 * Teardown, first step: the pods on the stack's nodes, deleted with the default grace period as `kubectl delete`
 * does; each node's fake kubelet sees the deletionTimestamp, runs CNI DEL, removes the namespace and deletes the pod
 * for good. Waits (until `deadline`) for the pods and their sandboxes to be gone; says what was refused or is left.
 */
async function deleteNodePods(o: {
  readonly rest: Rest;
  readonly nodePods: () => Promise<ReadonlyArray<Pod>>;
  readonly sandboxes: ReadonlyMap<string, PodSandbox & { removed: boolean }>;
  readonly alive: () => void;
  readonly deadline: number;
}): Promise<{ refused: Refusal[]; remaining: string[] }> {
  const refused: Refusal[] = [];
  for (const p of await o.nodePods()) {
    const r = await o.rest.call("DELETE", `/api/v1/namespaces/${p.metadata.namespace}/pods/${p.metadata.name}`);
    if (r.status !== 200 && r.status !== 202 && r.status !== 404) {
      refused.push({
        object: describe("Pod", p.metadata.name ?? "", p.metadata.namespace),
        status: r.status,
        message: messageOf(r),
      });
    }
  }
  const liveSandboxes = () => [...o.sandboxes.values()].filter((s) => !s.removed);
  while (Date.now() < o.deadline) {
    o.alive();
    const left = await o.nodePods();
    if (left.length === 0 && liveSandboxes().length === 0) break;
    await sleep(250);
  }
  const remaining = [
    ...(await o.nodePods()).map((p) => describe("Pod", p.metadata.name ?? "", p.metadata.namespace)),
    ...liveSandboxes().map((s) => `sandbox of ${s.namespace}/${s.name}`),
  ];
  return { refused, remaining };
}

/** The Node object of a stack node, Ready with its underlay address, as its kubelet would register it. */
const registerNode = (name: string, underlayIp: string, runId: string) =>
  Effect.gen(function* () {
    const k = yield* Kube;
    yield* k.create(NodeResource, { metadata: { name, labels: { [StackLabel]: runId } } });
    // Node status is a subresource, as kubelet writes it.
    yield* k.patch(NodeResource, name, {
      type: "merge",
      patch: {
        status: {
          addresses: [{ type: "InternalIP", address: underlayIp }, { type: "Hostname", address: name }],
          conditions: [{
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "fake kubelet",
            lastHeartbeatTime: new Date().toISOString(),
            lastTransitionTime: new Date().toISOString(),
          }],
        },
      },
    }, { subresource: "status" });
  });

/** The node agent of a stack node (cmd/netwatcher.ts: netwatcher + CNI daemon) inside the node's namespace. */
function agentArgv(o: {
  readonly ns: string;
  readonly kubeconfig: string;
  readonly node: string;
  readonly socket: string;
  readonly nodeDir: string;
  readonly binDir: string;
  readonly vxlanMode: string;
  readonly runId: string;
  readonly flags: Readonly<Record<string, string>>;
}): string[] {
  return [
    "ip",
    "netns",
    "exec",
    o.ns,
    Deno.execPath(),
    "run",
    "-A",
    `${repoRoot}/cmd/netwatcher.ts`,
    "--kubeconfig",
    o.kubeconfig,
    "--node-name",
    o.node,
    "--cni-socket",
    o.socket,
    "--cni-state-dir",
    `${o.nodeDir}/sandboxes`,
    "--cni-bin-dir",
    o.binDir,
    "--vxlan-mode",
    o.vxlanMode,
    "--peer-node-selector",
    `${StackLabel}=${o.runId}`,
    "--reconcile-period",
    "5s",
    // CNI DEL alone must free everything: the reclaimer would hide a leak.
    "--reclaim-period",
    "0s",
    ...Object.entries(o.flags).flatMap(([k, v]) => [`--${k}`, v]),
  ];
}

export async function startStack(cluster: StackCluster, options: StackOptions = {}): Promise<Stack> {
  const runId = crypto.randomUUID().replaceAll("-", "").slice(0, 6);
  const nodeNames = typeof options.nodes === "object"
    ? [...options.nodes]
    : Array.from({ length: options.nodes ?? 3 }, (_, i) => `node-${i + 1}`);
  const underlay = options.underlay ?? "10.88.0";
  const startTimeoutMs = options.startTimeoutMs ?? 180_000;
  const deno = Deno.execPath();
  const api = new URL(cluster.url);
  // The node namespaces reach the apiserver through a loopback forward of the same port (see the top).
  if (!["127.0.0.1", "localhost"].includes(api.hostname)) {
    throw new Error(`the stack needs an apiserver on loopback, not ${cluster.url}`);
  }
  const apiPort = Number(api.port || "443");
  const cniConfigs = Object.entries(options.cniConfigs ?? {});
  const badFile = cniConfigs.find(([file]) => !/^[\w.-]+$/.test(file));
  if (badFile) throw new Error(`not a plain file name: ${badFile[0]}`);
  const dir = await Deno.makeTempDir({ prefix: `danm-stack-${runId}-` });
  const logDir = `${dir}/logs`, cniDir = `${dir}/net.d`;
  await Deno.mkdir(logDir);
  await Deno.mkdir(cniDir);
  for (const [file, text] of cniConfigs) await Deno.writeTextFile(`${cniDir}/${file}`, text);

  const procs: Proc[] = [];
  /** How each process was started, so signal() + respawn() can restart it. */
  const launches = new Map<string, { argv: ReadonlyArray<string>; onStdoutLine?: (line: string) => void }>();
  const launch = (name: string, argv: ReadonlyArray<string>, onStdoutLine?: (line: string) => void) => {
    launches.set(name, { argv, ...(onStdoutLine ? { onStdoutLine } : {}) });
    const i = procs.findIndex((p) => p.name === name);
    const proc = spawn(name, argv, {
      logDir,
      ...(onStdoutLine ? { onStdoutLine } : {}),
      ...(options.onLog ? { onLog: options.onLog } : {}),
    });
    if (i >= 0) procs[i] = proc;
    else procs.push(proc);
    return proc;
  };
  const scope: NetnsScope = netnsScope();
  const kubeScope = Scope.makeUnsafe();
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromFile(cluster.kubeconfigPath);
  const rest = restClient(kubeConfig);
  const applier = new ObjectApplier(rest, nodeNames);
  const apiSocket = `${dir}/apiserver.sock`;
  const apiListener = Deno.listen({ transport: "unix", path: apiSocket });
  const apiForwarding = forward(apiListener, () => Deno.connect({ hostname: api.hostname, port: apiPort }));
  const hookPaths: string[] = [];
  const nodes: StackNode[] = [];
  const reports = new FakeletReports(options.onCni);
  const { sandboxes, sandboxFailures, delFailures } = reports;
  const svcwatcherIdentity = `stack-${runId}`;
  let kube: KubeService | undefined;
  let tornDown = false;
  let stopped: Promise<void> | undefined;

  // If the test process dies without stop(), take the processes with it (namespaces live in the runner's
  // private /run/netns and vanish with it).
  const killOnUnload = () => procs.forEach((p) => p.kill());
  globalThis.addEventListener("unload", killOnUnload);

  const crashed = () => crashedProcs(procs);
  const assertAlive = () => assertProcsAlive(procs, "stack");
  const logs = (lines = 30) => procLogs(procs, lines);

  const kubeRun = <A, E>(e: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provideService(e, Kube, kube!));

  const waitForPods: Stack["waitForPods"] = async (opts = {}) => {
    const wanted = opts.pods ?? [...applier.pods];
    const pending = new Set(wanted.map((p) => `${p.namespace}/${p.name}`));
    const got = new Map<string, Pod>();
    const deadline = Date.now() + (opts.timeoutMs ?? 180_000);
    while (pending.size > 0) {
      assertAlive();
      const all = await kubeRun(kube!.list(PodResource)).then((l) => l.items, () => []);
      const byKey = new Map(all.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
      for (const key of [...pending]) {
        const pod = byKey.get(key);
        const ready = pod?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
        const sb = sandboxes.get(key);
        if (pod && pod.status?.phase === "Running" && ready && sb && !sb.removed) {
          pending.delete(key);
          got.set(key, pod);
        }
      }
      if (pending.size === 0) break;
      // The fake kubelet gives a sandbox 5 attempts (fakelet.ts); after that nothing will change.
      const given = [...pending].filter((k) => (sandboxFailures.get(k)?.count ?? 0) >= 5);
      if (given.length > 0 || Date.now() > deadline) {
        const why = [...pending].map((k) =>
          `${k}${sandboxFailures.has(k) ? ` (${sandboxFailures.get(k)!.message})` : ""}`
        );
        throw new Error(
          given.length > 0
            ? `the fake kubelets gave up on ${given.length} pod(s): ${why.join("; ")}`
            : `pods not Running/Ready after ${opts.timeoutMs ?? 180_000} ms: ${why.join("; ")}`,
        );
      }
      await sleep(250);
    }
    return wanted.map((p) => got.get(`${p.namespace}/${p.name}`)!);
  };

  const sandboxOf = (namespace: string, name: string) => {
    const sb = sandboxes.get(`${namespace}/${name}`);
    if (!sb || sb.removed) throw new Error(`pod ${namespace}/${name} has no sandbox`);
    return sb;
  };

  const podLinks = async (namespace: string, name: string): Promise<PodLink[]> => {
    const sb = sandboxOf(namespace, name);
    const raw = await run(["ip", "-n", sb.netns, "-d", "-json", "addr", "show"]);
    return decodeIpAddrLinks(raw.trim() ? JSON.parse(raw) : [])
      .filter((l) => l.ifname !== "lo")
      .map((l) => ({
        name: l.ifname,
        kind: l.linkinfo?.info_kind ?? "",
        addresses: (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`),
      }));
  };

  const nodeOf = (name: string) => {
    const n = nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} in this stack`);
    return n;
  };

  const teardown = async (opts: { readonly timeoutMs?: number; readonly strict?: boolean } = {}) => {
    const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
    const pods = await deleteNodePods({
      rest,
      nodePods: async () => {
        const ours = new Set(nodeNames);
        return (await kubeRun(kube!.list(PodResource))).items.filter((p) => ours.has(p.spec.nodeName ?? ""));
      },
      sandboxes,
      // stop() tears down what it can even after a process died; a test wants to hear about the death.
      alive: opts.strict === false ? () => {} : assertAlive,
      deadline,
    });
    const refused = [...pods.refused], remaining = [...pods.remaining];
    const objects = await applier.deleteAll(deadline);
    refused.push(...objects.refused);
    remaining.push(...objects.remaining);
    tornDown = true;
    return { delFailures: [...delFailures], refused, remaining };
  };

  const stop = () =>
    stopped ??= (async () => {
      const unregister = async () => {
        for (const path of hookPaths.splice(0)) await rest.call("DELETE", path).catch(() => {});
      };
      // failurePolicy Fail: with the webhook gone, no danm object could be deleted.
      if (procs.find((p) => p.name === "webhook")?.exited) await unregister();
      if (kube && !tornDown) {
        // After a crash nothing may finish in time: do what can be done quickly.
        const timeoutMs = procs.some((p) => p.exited) ? 10_000 : 60_000;
        await teardown({ timeoutMs, strict: false }).catch((e) => console.error(`stack ${runId}: teardown: ${e}`));
      }
      // Unregister before the webhook stops, for the same reason.
      await unregister();
      const fakelets = procs.filter((p) => p.name.startsWith("fakelet-"));
      await Promise.all(fakelets.map((p) => p.stop(30_000)));
      await Promise.all(procs.filter((p) => !fakelets.includes(p)).map((p) => p.stop()));
      globalThis.removeEventListener("unload", killOnUnload);
      if (kube) {
        const k = kube;
        await kubeRun(Effect.gen(function* () {
          for (const n of nodeNames) yield* Effect.ignore(k.delete(NodeResource, n));
        }));
      }
      await rest.call("DELETE", `/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/danm-svcwatcher-${runId}`)
        .catch(() => {});
      // Namespaces of pods a crashed fake kubelet could not remove.
      for (const s of sandboxes.values()) if (!s.removed) await run(["ip", "netns", "del", s.netns]).catch(() => {});
      await scope.dispose();
      apiListener.close();
      await apiForwarding;
      await Effect.runPromise(Scope.close(kubeScope, Exit.void));
      rest.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();

  const underlayBridge = `hu${runId}`, lanBridge = `he${runId}`;
  const bridges = options.nodeBridges ?? [];
  const netconf = {
    cniVersion: options.cniVersion ?? "1.1.0",
    name: "danm_meta_cni",
    type: "danm",
    cniDir,
    namingScheme: options.namingScheme ?? "",
  };
  let nodeSeq = 0;
  /**
   * Builds node `name` (namespace, NICs, Node object, fake kubelet) and answers with the start of its agent: a node
   * agent gives up when it cannot list the network APIs at start (its DaemonSet would restart it), so it starts once
   * the node's fake kubelet forwards the apiserver into the node's namespace.
   */
  const buildNode = async (name: string): Promise<{ node: StackNode; startAgent: () => void }> => {
    const i = nodeSeq++;
    const ns = await scope.netns(`dn${runId}${i}`);
    const underlayIp = `${underlay}.${i + 1}`;
    await scope.veth({ name: `u${runId}${i}` }, { name: "ens3", ns });
    await scope.ip(undefined, "link", "set", `u${runId}${i}`, "master", underlayBridge);
    await scope.ip(ns, "addr", "add", `${underlayIp}/24`, "dev", "ens3");
    await scope.veth({ name: `e${runId}${i}` }, { name: "ens4", ns });
    await scope.ip(undefined, "link", "set", `e${runId}${i}`, "master", lanBridge);
    for (const [b, bridge] of bridges.entries()) {
      await scope.bridge(bridge, ns);
      await scope.veth({ name: `b${b}${runId}${i}` }, { name: `bup${b}`, ns });
      await scope.ip(ns, "link", "set", `bup${b}`, "master", bridge);
      await scope.ip(undefined, "link", "set", `b${b}${runId}${i}`, "master", `hb${b}${runId}`);
    }
    await kubeRun(registerNode(name, underlayIp, runId));

    const nodeDir = `${dir}/${name}`;
    await Deno.mkdir(nodeDir);
    const socket = `${nodeDir}/danm.sock`;
    const bin = await makeCniBin({ socket, dir: `${nodeDir}/bin` });
    const netconfFile = `${nodeDir}/00-danm.conf`;
    await Deno.writeTextFile(netconfFile, JSON.stringify({ ...netconf, daemonSocket: socket }));
    const node: StackNode = { name, netns: ns, underlayIp, cniSocket: socket, binDir: bin.dir };
    nodes.push(node);
    launch(
      `fakelet-${name}`,
      fakeletArgv({
        netnsPath: scope.path(ns),
        node: name,
        kubeconfig: cluster.kubeconfigPath,
        binDir: bin.dir,
        netconfFile,
        apiPort,
        apiSocket,
        ...(options.fakelet ? { tuning: options.fakelet } : {}),
      }),
      reports.lineHandler(name),
    );
    const startAgent = () =>
      void launch(
        `agent-${name}`,
        agentArgv({
          ns,
          kubeconfig: cluster.kubeconfigPath,
          node: name,
          socket,
          nodeDir,
          binDir: bin.dir,
          vxlanMode: options.vxlanMode ?? "multicast",
          runId,
          flags: options.agentFlags ?? {},
        }),
      );
    return { node, startAgent };
  };
  const forwardingOf = (names: ReadonlyArray<string>) =>
    eventually("the nodes' fake kubelets to forward the apiserver", () => {
      assertAlive();
      return Promise.resolve(names.every((n) => reports.forwarding.has(n)) ? true : undefined);
    }, startTimeoutMs);

  try {
    await installDanmCrds(kubeConfig);
    // The launchers run deno with --cached-only: make sure every entry point is in the cache.
    await run([
      deno,
      "cache",
      ...["cmd/netwatcher.ts", "cmd/webhook.ts", "cmd/svcwatcher.ts", "cmd/danm.ts", "cmd/fakeipam.ts"].map((f) =>
        `${repoRoot}/${f}`
      ),
      `${repoRoot}/tests/harness/fakelet_process.ts`,
    ], { cwd: repoRoot });
    kube = await Effect.runPromise(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath }, userAgent: `stack/${runId}` })
        .pipe(Scope.provide(kubeScope)),
    );

    // Webhook and svcwatcher first: they load while the nodes are being built.
    const serving = await cluster.pki.server(`danm-webhook-${runId}`, { dns: ["localhost"], ips: ["127.0.0.1"] });
    const webhookPort = freePort();
    launch("webhook", [
      deno,
      "run",
      "-A",
      `${repoRoot}/cmd/webhook.ts`,
      "--tls-cert-file",
      serving.certFile,
      "--tls-key-file",
      serving.keyFile,
      "--bind-address",
      "127.0.0.1",
      "--port",
      String(webhookPort),
      "--kubeconfig",
      cluster.kubeconfigPath,
      "--namespace",
      "kube-system",
    ]);
    launch("svcwatcher", [
      deno,
      "run",
      "-A",
      `${repoRoot}/cmd/svcwatcher.ts`,
      "--kubeconfig",
      cluster.kubeconfigPath,
      "--metrics-port",
      "0",
      "--lease-namespace",
      "kube-system",
      "--lease-name",
      `danm-svcwatcher-${runId}`,
      "--identity",
      svcwatcherIdentity,
    ]);

    // Shared segments: the underlay (VXLAN multicast must flood like on a plain switch), ens4's LAN, one per
    // node bridge.
    await scope.bridge(underlayBridge);
    await scope.ip(undefined, "link", "set", underlayBridge, "type", "bridge", "mcast_snooping", "0");
    await scope.bridge(lanBridge);
    for (const [b] of bridges.entries()) await scope.bridge(`hb${b}${runId}`);
    const built = [];
    for (const name of nodeNames) built.push(await buildNode(name));
    await forwardingOf(nodeNames);
    for (const b of built) b.startAgent();
    // Register the webhook once it is listening, then wait until the apiserver calls it.
    const hooks = webhookConfigurations({
      name: `danm-webhook-${runId}`,
      client: { url: `https://127.0.0.1:${webhookPort}` },
      caBundle: btoa(cluster.pki.ca.certPem),
    });
    for (
      const [collection, obj] of [
        ["/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", hooks.mutating],
        ["/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", hooks.validating],
      ] as const
    ) {
      const r = await rest.call("POST", collection, obj);
      if (r.status !== 201) throw new Error(`registering the webhook: ${messageOf(r)}`);
      hookPaths.push(`${collection}/danm-webhook-${runId}`);
    }
    const probe = {
      apiVersion: "danm.io/v1",
      kind: "DanmNet",
      metadata: { name: `probe-${runId}`, namespace: "default" },
      spec: { NetworkID: "probe", Options: { host_device: "x", vlan: 1, vxlan: 2 } },
    };
    await eventually("the webhook to answer the apiserver", async () => {
      assertAlive();
      const r = await rest.call("POST", "/apis/danm.io/v1/namespaces/default/danmnets?dryRun=All", probe);
      return r.status === 403 && /mutually exclusive/.test(messageOf(r)) ? true : undefined;
    }, startTimeoutMs);
    await eventually("svcwatcher to lead", async () => {
      assertAlive();
      const r = await rest.call(
        "GET",
        `/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/danm-svcwatcher-${runId}`,
      );
      return pick(r.body, "spec", "holderIdentity") === svcwatcherIdentity ? true : undefined;
    }, startTimeoutMs);
    await eventually("every node's CNI to be ready", () => {
      assertAlive();
      return Promise.resolve(reports.ready.size === nodeNames.length ? true : undefined);
    }, startTimeoutMs);
  } catch (e) {
    const detail = await logs(20);
    await stop().catch(() => {});
    throw new Error(`starting the stack: ${e instanceof Error ? e.message : e}\n${detail}`);
  }

  const procOf = (name: string) => {
    const p = procs.find((x) => x.name === name);
    if (!p) throw new Error(`no process ${name} in this stack`);
    return p;
  };
  const signal: Stack["signal"] = async (name, sig, graceMs = 10_000) => {
    const p = procOf(name);
    p.stopping = true;
    if (sig === "SIGKILL") p.kill();
    else await p.stop(graceMs, sig);
    await p.status;
  };
  const respawn: Stack["respawn"] = (name) => {
    const spec = launches.get(name);
    if (!spec || !procOf(name).exited) throw new Error(`${name} is not a stopped process of this stack`);
    launch(name, spec.argv, spec.onStdoutLine);
  };
  const addNode: Stack["addNode"] = async (name) => {
    if (nodeNames.includes(name)) throw new Error(`node ${name} exists`);
    nodeNames.push(name);
    const { node, startAgent } = await buildNode(name);
    await forwardingOf([name]);
    startAgent();
    await eventually(`node ${name}'s CNI to be ready`, () => {
      assertAlive();
      return Promise.resolve(reports.ready.has(name) ? true : undefined);
    }, startTimeoutMs);
    return node;
  };
  const removeNode: Stack["removeNode"] = async (name) => {
    const node = nodeOf(name);
    await Promise.all([signal(`agent-${name}`, "SIGKILL"), signal(`fakelet-${name}`, "SIGKILL")]);
    for (const [key, sb] of sandboxes) {
      if (sb.node === name && !sb.removed) sandboxes.set(key, { ...sb, removed: true });
    }
    // Every pod namespace of the node, including those of sandboxes still being created.
    for (const line of (await run(["ip", "netns", "list"])).split("\n")) {
      const ns = line.split(" ")[0];
      if (ns.startsWith(podNetnsPrefix(name))) await run(["ip", "netns", "del", ns]).catch(() => {});
    }
    // Its NICs' host ends go with the namespace.
    await run(["ip", "netns", "del", node.netns]).catch(() => {});
    await kubeRun(Effect.ignore(kube!.delete(NodeResource, name)));
    nodes.splice(nodes.indexOf(node), 1);
    nodeNames.splice(nodeNames.indexOf(name), 1);
    reports.ready.delete(name);
    reports.forwarding.delete(name);
  };

  const stack: Stack = {
    run: runId,
    nodes,
    kube: kube!,
    rest,
    cniDir,
    dir,
    kubeRun,
    apply: (objects) => {
      assertAlive();
      return applier.apply(objects);
    },
    pods: () => [...applier.pods],
    waitForPods,
    sandbox: (namespace, name) => {
      const sb = sandboxes.get(`${namespace}/${name}`);
      return sb && !sb.removed ? sb : undefined;
    },
    sandboxes: () => [...sandboxes.values()],
    exec: (namespace, name, argv) => run(["ip", "netns", "exec", sandboxOf(namespace, name).netns, ...argv]),
    ping: (namespace, name, target, count = 1) => pingIn(sandboxOf(namespace, name).netns, target, count),
    podLinks,
    nodeLinks: async (node) => {
      const raw = await run(["ip", "-n", nodeOf(node).netns, "-json", "link", "show"]);
      return decodeIpAddrLinks(raw.trim() ? JSON.parse(raw) : []).map((l) => l.ifname).sort();
    },
    teardown: (opts) => teardown(opts),
    logs,
    processes: () => procs.map((p) => ({ name: p.name, pid: p.pid })),
    assertAlive,
    signal,
    respawn,
    crashed: () => crashed().map((p) => ({ name: p.name, code: p.exited!.code })),
    addNode,
    removeNode,
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return stack;
}
