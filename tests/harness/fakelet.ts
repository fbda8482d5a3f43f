// A minimal fake kubelet (test-environment.md §6.2): what a CRI runtime does for pod sandboxes, minus containers.
// Per pod it creates a network namespace, runs the node's CNI network configuration exactly as a runtime does
// (exec of `<CNI_PATH>/<type>` with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME=eth0, kubelet-style
// CNI_ARGS and CNI_PATH in an otherwise clean environment; a conflist plugin by plugin with `name`, `cniVersion`
// and `prevResult` injected), and reports the pod Running/Ready with its IPs. Deleting reverses that.
//
// Used directly (runPod/stopPod) by tests and benchmarks, or as a controller (start) watching this node's pods.
//
// `persistent` makes it behave like kubelet under trouble: a sandbox that fails is retried (backoff up to 5 s) for as
// long as the pod exists, and a DEL that fails is retried until it succeeds before the namespace goes. Pods can ask
// for runtime faults through annotations (the chaos run, tests/chaos): FaultAnnotations.
import { Effect, Fiber, Stream } from "effect";
import { type Pod, PodResource } from "../../core/api/k8s.ts";
import { isTransient, type KubeService } from "../../core/ports/kube.ts";
import { run } from "./proc.ts";

export interface FakeletOptions {
  readonly nodeName: string;
  readonly kube: KubeService;
  /** CNI_PATH: where `danm`, `fakeipam` and the delegates live (tests/harness/cnibin.ts). */
  readonly binDir: string;
  /** The network configuration the runtime loaded (a single-plugin conf or a conflist), e.g. 00-danm.conf. */
  readonly netconf: Readonly<Record<string, unknown>>;
  /** PATH handed to plugins (runtimes pass their own). */
  readonly path?: string;
  /** Sandboxes the controller (start) sets up at once; further pods wait for a slot. Default unbounded. */
  readonly maxParallelSandboxes?: number;
  /** Attempts at a pod's sandbox before the controller gives up on it (backoff 200 ms doubling, at most 10 s). Default 5. */
  readonly sandboxAttempts?: number;
  /** Retry failed sandboxes while the pod exists and failed DELs until they succeed, as kubelet does. */
  readonly persistent?: boolean;
  /** Every CNI ADD/DEL this fakelet runs, when it starts and when it ends. */
  readonly onCni?: (e: CniEvent) => void;
}

export interface CniEvent {
  readonly command: "ADD" | "DEL";
  /** "namespace/name" */
  readonly pod: string;
  readonly containerId: string;
  readonly phase: "start" | "end";
  /** Exit code (phase "end"). */
  readonly code?: number;
}

/**
 * Runtime faults a pod asks for (value "true"), for the chaos run: the runtime loses the pod's DEL (the namespace
 * goes, no CNI DEL ever comes); the namespace is gone before the DEL; the ADD is run twice for the same sandbox.
 */
export const FaultAnnotations = {
  dropDel: "fault.danm.test/drop-del",
  netnsGoneBeforeDel: "fault.danm.test/netns-gone",
  repeatAdd: "fault.danm.test/repeat-add",
} as const;

/** The pod namespaces a fakelet creates are named after its node: a node that vanishes takes exactly those along. */
export const podNetnsPrefix = (node: string) => `fl-${node}-`;
const podNetnsName = (node: string, containerId: string) => `${podNetnsPrefix(node)}${containerId.slice(0, 12)}`;

const wants = (pod: Pod | undefined, fault: string) => pod?.metadata.annotations?.[fault] === "true";

export interface Sandbox {
  readonly pod: { readonly namespace: string; readonly name: string; readonly uid: string };
  readonly containerId: string;
  readonly netnsName: string;
  readonly netns: string;
  /** The final raw result of ADD. */
  readonly result: unknown;
}

export interface CniOutcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed, when it is JSON. */
  readonly json: unknown;
  readonly ms: number;
}

/**
 * The pod IPs a runtime reports: the addresses of the interface named eth0 (of every interface when the result
 * names none), at most one per family, as the apiserver allows.
 */
export function podIps(result: unknown): string[] {
  const r = (typeof result === "object" && result !== null ? result : {}) as {
    interfaces?: Array<{ name?: unknown }>;
    ips?: Array<{ address?: unknown; interface?: unknown }>;
  };
  const primary = (r.interfaces ?? []).findIndex((i) => i.name === "eth0");
  const out: string[] = [];
  for (const ip of r.ips ?? []) {
    if (primary >= 0 && ip.interface !== undefined && ip.interface !== primary) continue;
    const a = String(ip.address ?? "").split("/")[0];
    if (a && !out.some((o) => o.includes(":") === a.includes(":"))) out.push(a);
  }
  return out;
}

/** CNI_ARGS as kubelet's runtime passes them for a pod's sandbox. */
export function kubeletCniArgs(pod: Sandbox["pod"], containerId: string): string {
  return `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};` +
    `K8S_POD_INFRA_CONTAINER_ID=${containerId};K8S_POD_UID=${pod.uid}`;
}

/**
 * Execs `<binDir>/<plugin.type>` as a runtime does: the CNI variables (CNI_PATH = binDir) in an otherwise clean
 * environment, the configuration on stdin.
 */
export async function execCni(
  binDir: string,
  plugin: Readonly<Record<string, unknown>>,
  command: string,
  env: { containerId?: string; netns?: string; ifName?: string; args?: string },
  path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
): Promise<CniOutcome> {
  const started = performance.now();
  const child = new Deno.Command(`${binDir}/${String(plugin.type)}`, {
    clearEnv: true,
    env: {
      CNI_COMMAND: command,
      CNI_PATH: binDir,
      PATH: path,
      ...(env.containerId ? { CNI_CONTAINERID: env.containerId } : {}),
      ...(env.netns !== undefined ? { CNI_NETNS: env.netns } : {}),
      ...(env.ifName ? { CNI_IFNAME: env.ifName } : {}),
      ...(env.args ? { CNI_ARGS: env.args } : {}),
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(plugin)));
  await w.close();
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout), stderr = new TextDecoder().decode(out.stderr);
  let json: unknown = undefined;
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch { /* not JSON */ }
  return { code: out.code, stdout, stderr, json, ms: performance.now() - started };
}

export class CniCallFailed extends Error {
  constructor(readonly command: string, readonly outcome: CniOutcome) {
    super(`CNI ${command} exited with ${outcome.code}: ${outcome.stdout || outcome.stderr}`);
  }
}

type Conf = Readonly<Record<string, unknown>>;

const randomHex = (bytes: number) =>
  [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");

export class Fakelet {
  readonly sandboxes = new Map<string, Sandbox>();
  /** Pods whose sandbox the runtime lost and that this controller leaves alone from then on (see lose()). */
  private readonly lost = new Set<string>();
  private readonly busy = new Map<string, Promise<unknown>>();
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /** UIDs of pods being deleted: a persistent sandbox retry stops for them. */
  private readonly terminating = new Set<string>();
  /** Fault annotations of the pod of each sandbox, as they were when its ADD ran. */
  private readonly faults = new Map<string, Pod>();
  private watcher: Fiber.Fiber<unknown, unknown> | undefined;

  constructor(readonly options: FakeletOptions) {}

  /** The plugins the runtime runs, with name and cniVersion injected as libcni does. */
  get plugins(): ReadonlyArray<Conf> {
    const c = this.options.netconf;
    const name = c.name, cniVersion = c.cniVersion;
    const list = Array.isArray(c.plugins) ? c.plugins as Conf[] : [c];
    return list.map((p) => ({ ...p, name, cniVersion }));
  }

  get cniVersion(): string {
    return String(this.options.netconf.cniVersion ?? "1.1.0");
  }

  /** Execs one plugin as a runtime does. */
  exec(
    plugin: Conf,
    command: string,
    env: { containerId?: string; netns?: string; ifName?: string; args?: string },
  ): Promise<CniOutcome> {
    return execCni(this.options.binDir, plugin, command, env, this.options.path);
  }

  private kubeletArgs(pod: Sandbox["pod"], containerId: string) {
    return kubeletCniArgs(pod, containerId);
  }

  /** exec with the start and end reported to onCni. */
  private async execReported(
    plugin: Conf,
    command: "ADD" | "DEL",
    env: { containerId: string; netns: string; ifName: string; args: string },
    pod: Sandbox["pod"],
  ): Promise<CniOutcome> {
    const base = { command, pod: `${pod.namespace}/${pod.name}`, containerId: env.containerId };
    this.options.onCni?.({ ...base, phase: "start" });
    const out = await this.exec(plugin, command, env);
    this.options.onCni?.({ ...base, phase: "end", code: out.code });
    return out;
  }

  /** ADD through the whole configuration; throws CniCallFailed (after the runtime's cleanup DEL) on failure. */
  async add(pod: Sandbox["pod"], containerId: string, netns: string): Promise<{ result: unknown; ms: number }> {
    const env = { containerId, netns, ifName: "eth0", args: this.kubeletArgs(pod, containerId) };
    let prev: unknown = undefined;
    let ms = 0;
    for (const p of this.plugins) {
      const out = await this.execReported(prev === undefined ? p : { ...p, prevResult: prev }, "ADD", env, pod);
      ms += out.ms;
      if (out.code !== 0) throw new CniCallFailed("ADD", out);
      prev = out.json ?? prev;
    }
    return { result: prev, ms };
  }

  /** DEL through the configuration, last plugin first, with the cached result as prevResult (0.4.0+). */
  async del(pod: Sandbox["pod"], containerId: string, netns: string, prevResult?: unknown): Promise<CniOutcome[]> {
    const env = { containerId, netns, ifName: "eth0", args: this.kubeletArgs(pod, containerId) };
    const withPrev = prevResult !== undefined && !this.cniVersion.startsWith("0.3");
    const outs: CniOutcome[] = [];
    for (const p of [...this.plugins].reverse()) {
      outs.push(await this.execReported(withPrev ? { ...p, prevResult } : p, "DEL", env, pod));
    }
    return outs;
  }

  /** DEL, and for a persistent fakelet again (backoff up to 2 s, for at most `forMs`) until every plugin succeeds. */
  private async delUntilDone(
    pod: Sandbox["pod"],
    containerId: string,
    netns: string,
    prevResult?: unknown,
    forMs = 300_000,
  ): Promise<CniOutcome[]> {
    const deadline = Date.now() + forMs;
    for (let attempt = 0;; attempt++) {
      const outs = await this.del(pod, containerId, netns, prevResult);
      if (!this.options.persistent || outs.every((o) => o.code === 0) || Date.now() > deadline) return outs;
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
    }
  }

  async check(sb: Sandbox): Promise<CniOutcome[]> {
    const env = {
      containerId: sb.containerId,
      netns: sb.netns,
      ifName: "eth0",
      args: this.kubeletArgs(sb.pod, sb.containerId),
    };
    const outs: CniOutcome[] = [];
    for (const p of this.plugins) outs.push(await this.exec({ ...p, prevResult: sb.result }, "CHECK", env));
    return outs;
  }

  /** GC with the sandboxes this fakelet holds (or `valid`) as the valid attachments. */
  async gc(valid?: ReadonlyArray<Sandbox>): Promise<CniOutcome[]> {
    const list = (valid ?? [...this.sandboxes.values()]).map((s) => ({ containerID: s.containerId, ifname: "eth0" }));
    const outs: CniOutcome[] = [];
    for (const p of this.plugins) outs.push(await this.exec({ ...p, "cni.dev/valid-attachments": list }, "GC", {}));
    return outs;
  }

  async status(): Promise<CniOutcome[]> {
    const outs: CniOutcome[] = [];
    for (const p of this.plugins) outs.push(await this.exec(p, "STATUS", {}));
    return outs;
  }

  private kubeRun<A, E>(e: Effect.Effect<A, E>): Promise<A> {
    return Effect.runPromise(e);
  }

  /** Creates the sandbox of pod namespace/name: netns, CNI ADD, status Running/Ready with its IPs. */
  async runPod(namespace: string, name: string): Promise<Sandbox & { addMs: number }> {
    const pod = await this.kubeRun(this.options.kube.get(PodResource, name, { namespace }));
    const ref = { namespace, name, uid: pod.metadata.uid ?? "" };
    const containerId = randomHex(32);
    const netnsName = podNetnsName(this.options.nodeName, containerId);
    await run(["ip", "netns", "add", netnsName]);
    const netns = `/run/netns/${netnsName}`;
    await run(["ip", "-n", netnsName, "link", "set", "lo", "up"]);
    let added;
    try {
      added = await this.add(ref, containerId, netns);
      // A runtime retrying an ADD it gave up on: the same sandbox again (the fault a pod can ask for).
      if (wants(pod, FaultAnnotations.repeatAdd)) added = await this.add(ref, containerId, netns);
    } catch (e) {
      // As kubelet: a failed sandbox is torn down (DEL) and its namespace removed.
      await this.delUntilDone(ref, containerId, netns).catch(() => {});
      await run(["ip", "netns", "del", netnsName]).catch(() => {});
      throw e;
    }
    this.faults.set(`${namespace}/${name}`, pod);
    const sb: Sandbox = { pod: ref, containerId, netnsName, netns, result: added.result };
    this.sandboxes.set(`${namespace}/${name}`, sb);
    // As kubelet's status manager, through apiserver outages (a persistent fakelet).
    for (let attempt = 0;; attempt++) {
      const r = await this.kubeRun(Effect.result(this.reportRunning(pod, added.result)));
      if (r._tag === "Success") break;
      if (!this.options.persistent || !isTransient(r.failure) || attempt >= 60) {
        console.error(`fakelet: status of ${namespace}/${name}: ${r.failure.message}`);
        break;
      }
      await new Promise((res) => setTimeout(res, Math.min(2000, 100 * 2 ** attempt)));
    }
    return { ...sb, addMs: added.ms };
  }

  private reportRunning(pod: Pod, result: unknown) {
    const ips = podIps(result);
    const now = new Date().toISOString();
    const cond = (type: string) => ({ type, status: "True", lastTransitionTime: now });
    return this.options.kube.patch(PodResource, pod.metadata.name ?? "", {
      type: "merge",
      patch: {
        status: {
          phase: "Running",
          startTime: now,
          ...(ips.length > 0 ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}),
          conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map(cond),
        },
      },
    }, { namespace: pod.metadata.namespace ?? "", subresource: "status" });
  }

  /** CNI DEL and namespace removal for the pod's sandbox. Returns the DEL outcomes (empty if none ran). */
  async stopPod(namespace: string, name: string): Promise<CniOutcome[]> {
    const key = `${namespace}/${name}`;
    const sb = this.sandboxes.get(key);
    if (!sb) return [];
    this.sandboxes.delete(key);
    const pod = this.faults.get(key);
    this.faults.delete(key);
    if (wants(pod, FaultAnnotations.dropDel)) {
      console.error(`fakelet ${this.options.nodeName}: fault: dropping the DEL of ${key} (${sb.containerId})`);
      await run(["ip", "netns", "del", sb.netnsName]).catch(() => {});
      return [];
    }
    if (wants(pod, FaultAnnotations.netnsGoneBeforeDel)) {
      console.error(`fakelet ${this.options.nodeName}: fault: namespace of ${key} gone before its DEL`);
      await run(["ip", "netns", "del", sb.netnsName]).catch(() => {});
    }
    const outs = await this.delUntilDone(sb.pod, sb.containerId, sb.netns, sb.result);
    await run(["ip", "netns", "del", sb.netnsName]).catch(() => {});
    return outs;
  }

  /** One operation per pod at a time. */
  private serial<T>(key: string, f: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(key) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(f);
    this.busy.set(key, next);
    return next.finally(() => {
      if (this.busy.get(key) === next) this.busy.delete(key);
    });
  }

  /**
   * The runtime loses a pod's sandbox without a DEL (a node crash) and the controller does not start it again:
   * what CNI GC exists for. Returns the lost sandbox. (A real kubelet would start a new sandbox; a test that wants
   * GC to free exactly the old one must keep a status update of the pod from doing that here.)
   */
  lose(namespace: string, name: string): Sandbox | undefined {
    const key = `${namespace}/${name}`;
    const sb = this.sandboxes.get(key);
    this.sandboxes.delete(key);
    this.lost.add(key);
    return sb;
  }

  private onPod(pod: Pod, deleted: boolean): void {
    const namespace = pod.metadata.namespace ?? "", name = pod.metadata.name ?? "";
    const key = `${namespace}/${name}`;
    if (this.lost.has(key)) return;
    const phase = pod.status?.phase;
    if (deleted || pod.metadata.deletionTimestamp) {
      const uid = pod.metadata.uid ?? "";
      this.terminating.add(uid);
      void this.serial(key, async () => {
        await this.stopPod(namespace, name);
        // As kubelet's status manager: the pod object goes once its sandbox is gone, retried through apiserver
        // outages (no later event would come for a pod that stays Terminating).
        for (let attempt = 0; !deleted; attempt++) {
          const outcome = await this.kubeRun(
            Effect.result(this.options.kube.delete(PodResource, name, {
              namespace,
              gracePeriodSeconds: 0,
              ...(uid ? { preconditions: { uid } } : {}),
            })),
          );
          if (outcome._tag === "Success" || !isTransient(outcome.failure) || attempt >= 60) break;
          await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
        }
      }).finally(() => {
        if (deleted) this.terminating.delete(uid);
      });
      return;
    }
    if (this.sandboxes.has(key) || phase === "Succeeded" || phase === "Failed") return;
    const uid = pod.metadata.uid ?? "";
    void this.serial(key, async () => {
      const attempts = this.options.persistent ? Infinity : this.options.sandboxAttempts ?? 5;
      for (let attempt = 0; attempt < attempts && !this.sandboxes.has(key) && !this.terminating.has(uid); attempt++) {
        try {
          await this.inSlot(() => this.runPod(namespace, name));
        } catch (e) {
          console.error(`fakelet ${this.options.nodeName}: FailedCreatePodSandBox ${key}: ${(e as Error).message}`);
          if (this.options.persistent) {
            // Retried while the pod exists: a deleted pod's sandbox is nobody's business any more.
            const still = await this.kubeRun(Effect.result(this.options.kube.get(PodResource, name, { namespace })));
            if (
              still._tag === "Failure" ? still.failure._tag === "KubeNotFound" : (
                still.success.metadata.uid !== uid || still.success.metadata.deletionTimestamp !== undefined
              )
            ) break;
          }
          await new Promise((r) =>
            setTimeout(r, Math.min(200 * 2 ** attempt, this.options.persistent ? 5000 : 10_000))
          );
        }
      }
    });
  }

  /** Runs f when fewer than maxParallelSandboxes sandboxes are being set up. */
  private async inSlot<T>(f: () => Promise<T>): Promise<T> {
    // A finishing sandbox hands its slot straight to the next waiter.
    if (this.running < (this.options.maxParallelSandboxes ?? Infinity)) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await f();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  /** Watches this node's pods: new ones get a sandbox, deleted ones lose it. */
  start(): void {
    const stream = this.options.kube.watch(PodResource, { fieldSelector: `spec.nodeName=${this.options.nodeName}` });
    this.watcher = Effect.runFork(Stream.runForEach(stream, (ev) =>
      Effect.sync(() => {
        switch (ev._tag) {
          case "Sync":
            for (const p of ev.items) this.onPod(p, false);
            break;
          case "Added":
          case "Modified":
            this.onPod(ev.object, false);
            break;
          case "Deleted":
            this.onPod(ev.object, true);
            break;
        }
      })));
  }

  /** Stops watching, tears every sandbox down. */
  async dispose(): Promise<void> {
    if (this.watcher) await Effect.runPromise(Fiber.interrupt(this.watcher)).catch(() => {});
    await Promise.allSettled([...this.busy.values()]);
    for (const key of [...this.sandboxes.keys()]) {
      const [ns, name] = key.split("/");
      await this.stopPod(ns, name).catch(() => {});
    }
  }
}
