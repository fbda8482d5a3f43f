// bench:netpol's convergence: pods with real network namespaces, MultiNetworkPolicies on a real apiserver, one node
// agent's policy controller per node (each in a Worker: a thread of its own, see agent_worker.ts), and pod changes
// made one at a time — a label flip, a pod added, a pod deleted, a policy edited. For each change the bench
// predicts, before writing it, the ruleset every local pod must end up with (the engine run on the informers' state
// with the change applied: a full recompute, independent of the controller's own affected-pod computation); the
// pods whose ruleset changes are the affected ones. Convergence = from the API write until nft has returned for the
// last affected pod with exactly that ruleset. Baseline of the same run: the write → the bench's own watch event.
// After each change one affected pod's table is read back from the kernel and compared with the predicted ruleset
// loaded into a scratch netns (nft's own JSON listing of both, set elements in sorted order: a patched set lists
// them in the order they were added).
import { Effect, Fiber, Layer, ManagedRuntime, Stream, SubscriptionRef } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { DanmEpResource } from "../../../core/api/danm.ts";
import { NamespaceResource, PodResource } from "../../../core/api/k8s.ts";
import { type MultiNetworkPolicy, MultiNetworkPolicyResource } from "../../../core/api/netpol.ts";
import { type Informer, type InformerState, Kube } from "../../../core/ports/kube.ts";
import type { PodKey } from "../../../core/netpol/model.ts";
import { nodeWorld, type WorldInputs } from "../../../core/netpol/world.ts";
import { engineRenderer } from "../../../core/netpol/controller.ts";
import { startApiServer } from "../../harness/apiserver.ts";
import { run } from "../../harness/proc.ts";
import { normalizedTable } from "../../harness/nft_table.ts";
import { installDanmCrds } from "../../integration/api/danm_crds.ts";
import type { AgentMessage } from "./agent_worker.ts";
import {
  type BenchPod,
  benchPod,
  danmEpObject,
  namespaces,
  podObject,
  policyObject,
  type ScenarioSize,
} from "./scenario.ts";

export type ChangeKind = "label" | "add" | "delete" | "policy";
const kinds: ReadonlyArray<ChangeKind> = ["label", "policy", "add", "delete"];

export interface ConvergeOptions {
  readonly size: ScenarioSize;
  readonly changes: number;
  readonly timeoutMs: number;
  /** How the agents patch set elements (the live PolicyTables' patchWith). */
  readonly patchWith: "nft" | "netlink";
  readonly log: (s: string) => void;
}

export interface ChangeResult {
  readonly kind: ChangeKind;
  readonly affected: number;
  /** Write → nft returned for the last affected pod; the timeout when it never did. */
  readonly convergeMs: number;
  readonly timedOut: boolean;
  /** Write → the bench's own informer shows it. */
  readonly floorMs: number;
  /** nft transaction time of every agent until convergence (summed: agents run in parallel). */
  readonly nftMs: number;
  /** Of the tables written until convergence, how many were patched (set elements only). */
  readonly patched: number;
}

export interface ConvergeResult {
  /** Agents started → every pod's table programmed (what a restart of every agent costs). */
  readonly programAllMs: number;
  readonly changes: ReadonlyArray<ChangeResult>;
  readonly kernelChecks: number;
  readonly kernelMismatches: number;
  readonly setupMs: number;
}

/** mulberry32: a small seeded generator, so runs pick the same changes. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const key = (ns: string | undefined, name: string | undefined): PodKey => `${ns ?? ""}/${name ?? ""}`;

/**
 * Every local pod's ruleset (undefined: no table), by netns, rendered as the agents render it (the engine's renderer)
 * from one world for `inputs`.
 */
function expectedTables(inputs: WorldInputs, nodes: number): Map<string, string | undefined> {
  const views = Array.from({ length: nodes }, (_, n) => nodeWorld(inputs, `node-${n}`));
  const world = views[0].world; // the same cluster-wide world on every node; only `local` differs
  const out = new Map<string, string | undefined>();
  for (const { local } of views) {
    for (const pod of local.values()) out.set(pod.netns, Effect.runSync(engineRenderer(world, pod.key))?.script);
  }
  return out;
}

/** What the agents last wrote to each netns, and a hook to re-check a wait on every write. */
class KernelWrites {
  readonly last = new Map<string, { script: string | undefined; at: number }>();
  /** Time spent in nft transactions (apply/patch/remove), summed over every agent. */
  nftMs = 0;
  /** Tables patched (set elements only) rather than replaced whole. */
  patches = 0;
  failure: string | undefined;
  private waiter: (() => void) | undefined;
  record(m: AgentMessage): void {
    if (m.kind === "failed") this.failure = m.message;
    else {
      this.last.set(m.netns, { script: m.kind === "applied" ? m.script : undefined, at: m.at });
      this.nftMs += m.nftMs;
      if (m.kind === "applied" && m.patched) this.patches++;
    }
    this.waiter?.();
  }
  /** For a wait that timed out: how far the agents got. */
  progress(want: ReadonlyMap<string, string | undefined>, since: number): string {
    const got = [...want].map(([netns, script]) => ({ w: this.last.get(netns), script }));
    const written = got.filter((g) => g.w && g.w.at >= since).length;
    const right = got.filter((g) => g.w && g.w.at >= since && g.w.script === g.script).length;
    return `${written} of ${want.size} written since, ${right} with the predicted ruleset` +
      (this.failure ? `; ${this.failure}` : "");
  }
  /** Resolves with the time of the last write once every netns in `want` got its ruleset after `since`. */
  until(want: ReadonlyMap<string, string | undefined>, since: number, timeoutMs: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      const finish = (at: number | undefined) => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(at);
      };
      const check = () => {
        if (this.failure) return finish(undefined);
        let latest = since;
        for (const [netns, script] of want) {
          const w = this.last.get(netns);
          if (!w || w.at < since || w.script !== script) return;
          latest = Math.max(latest, w.at);
        }
        finish(latest);
      };
      this.waiter = check;
      check();
    });
  }
}

const wallNow = () => performance.timeOrigin + performance.now();

/** The first time `done` holds for the informer's state (checked on every change). */
const firstTime = <A>(informer: Informer<A>, done: (s: InformerState<A>) => boolean) =>
  SubscriptionRef.changes(informer.state).pipe(
    Stream.filter(done),
    Stream.take(1),
    Stream.runDrain,
    Effect.map(wallNow),
  );

async function addNetns(names: ReadonlyArray<string>): Promise<void> {
  for (let i = 0; i < names.length; i += 16) {
    await Promise.all(names.slice(i, i + 16).map((n) => run(["ip", "netns", "add", n])));
  }
}
const netnsName = (path: string) => path.slice("/run/netns/".length);

/** nft's listing of `script` as the kernel has it, through a scratch netns. */
async function listingOf(scratch: string, script: string): Promise<string> {
  await run(["ip", "netns", "exec", scratch, "nft", "-f", "-"], {
    stdin: `table inet danm_netpol\ndelete table inet danm_netpol\n${script}`,
  });
  return normalizedTable(
    await run(["ip", "netns", "exec", scratch, "nft", "-j", "list", "table", "inet", "danm_netpol"]),
  );
}
async function kernelListing(netns: string): Promise<string | undefined> {
  return await run(["nsenter", `--net=${netns}`, "--", "nft", "-j", "list", "table", "inet", "danm_netpol"])
    .then(normalizedTable, () => undefined);
}

export async function measureConvergence(o: ConvergeOptions): Promise<ConvergeResult> {
  const { size, log } = o;
  const setupStart = performance.now();
  const pods: BenchPod[] = Array.from({ length: size.pods }, (_, i) => benchPod(size, i));
  const scratch = `${size.prefix}-scratch`;
  await addNetns([scratch, ...pods.map((p) => netnsName(p.netns))]);
  const api = await startApiServer();
  const workers: Worker[] = [];
  const driver = ManagedRuntime.make(
    layerLiveKube({ config: { _tag: "Kubeconfig", path: api.kubeconfigPath } }).pipe(Layer.orDie),
  );
  try {
    const kc = new (await import("@kubernetes/client-node")).KubeConfig();
    kc.loadFromFile(api.kubeconfigPath);
    await installDanmCrds(kc);
    return await driver.runPromise(Effect.scoped(Effect.gen(function* () {
      const kube = yield* Kube;
      // ---- The cluster's objects --------------------------------------------------------------------------
      yield* Effect.forEach(namespaces(size), (n) => kube.create(NamespaceResource, n), { discard: true });
      const createPod = (p: BenchPod) =>
        Effect.flatMap(
          kube.create(PodResource, podObject(p)),
          (pod) => kube.create(DanmEpResource, danmEpObject(p, pod.metadata.uid ?? "")),
        );
      yield* Effect.forEach(pods, createPod, { concurrency: 16, discard: true });
      yield* Effect.forEach(
        Array.from({ length: size.policies }, (_, j) => policyObject(size, j)),
        (p) => kube.create(MultiNetworkPolicyResource, p),
        { concurrency: 16, discard: true },
      );
      const informers = {
        policies: yield* kube.informer(MultiNetworkPolicyResource),
        pods: yield* kube.informer(PodResource),
        namespaces: yield* kube.informer(NamespaceResource),
        danmEps: yield* kube.informer(DanmEpResource),
      };
      yield* Effect.all([
        informers.policies.synced,
        informers.pods.synced,
        informers.namespaces.synced,
        informers.danmEps.synced,
      ]);
      const snapshot = (): Effect.Effect<WorldInputs> =>
        Effect.all({
          policies: informers.policies.list,
          pods: informers.pods.list,
          namespaces: informers.namespaces.list,
          danmEps: informers.danmEps.list,
        });
      const setupMs = performance.now() - setupStart;
      log(
        `${size.pods} pods (netns, Pod, DanmEp), ${size.policies} policies, ${size.nodes} nodes in ${
          (setupMs / 1000).toFixed(1)
        } s`,
      );

      // ---- Agents start: every pod programmed ---------------------------------------------------------------
      let expected = expectedTables(yield* snapshot(), size.nodes);
      // A pod no policy applies to gets no table, and nothing is written for it.
      const policed = new Map([...expected].filter(([, script]) => script !== undefined));
      const writes = new KernelWrites();
      const started = wallNow();
      for (let n = 0; n < size.nodes; n++) {
        const w = new Worker(new URL("./agent_worker.ts", import.meta.url).href, { type: "module" });
        w.onmessage = (e: MessageEvent<AgentMessage>) => writes.record(e.data);
        w.onerror = (e: ErrorEvent) => {
          e.preventDefault();
          writes.record({ kind: "failed", message: `node-${n}'s agent: ${e.message}` });
        };
        w.postMessage({ kubeconfig: api.kubeconfigPath, node: `node-${n}`, patchWith: o.patchWith });
        workers.push(w);
      }
      const allAt = yield* Effect.promise(() => writes.until(policed, started, 4 * o.timeoutMs));
      if (allAt === undefined) {
        throw new Error(`the agents did not program every pod: ${writes.progress(policed, started)}`);
      }
      const programAllMs = allAt - started;
      log(`agents started → ${policed.size} policed pods programmed in ${programAllMs.toFixed(0)} ms`);

      // ---- Changes, one at a time ---------------------------------------------------------------------------
      const random = prng(20261207);
      const live = pods.map((p) => p);
      let nextIndex = size.pods;
      const results: ChangeResult[] = [];
      let kernelChecks = 0, kernelMismatches = 0;
      for (let c = 0; c < o.changes; c++) {
        const kind = kinds[c % kinds.length];
        const before = yield* snapshot();
        let after: WorldInputs;
        let write: Effect.Effect<unknown, unknown>;
        let seen: () => Effect.Effect<number>;
        if (kind === "label") {
          const p = live[Math.floor(random() * live.length)];
          const app = Number(p.labels.app.slice(4));
          p.labels = { ...p.labels, app: `app-${(app + 7) % size.apps}` };
          const k = key(p.namespace, p.name);
          after = {
            ...before,
            pods: before.pods.map((x) =>
              key(x.metadata.namespace, x.metadata.name) === k
                ? { ...x, metadata: { ...x.metadata, labels: { ...p.labels } } }
                : x
            ),
          };
          write = kube.patch(PodResource, p.name, { type: "merge", patch: { metadata: { labels: p.labels } } }, {
            namespace: p.namespace,
          });
          seen = () => firstTime(informers.pods, (s) => s.items.get(k)?.metadata.labels?.app === p.labels.app);
        } else if (kind === "policy") {
          const j = Math.floor(random() * size.policies);
          const current = before.policies.find((x) => x.metadata.name === `policy-${j}`)!;
          const port = current.spec?.ingress?.[0]?.ports?.[0]?.port === 8080 ? 8081 : 8080;
          const edited: MultiNetworkPolicy = {
            ...current,
            spec: { ...current.spec!, ingress: policyObject(size, j, port).spec!.ingress },
          };
          after = { ...before, policies: before.policies.map((x) => x === current ? edited : x) };
          write = kube.patch(MultiNetworkPolicyResource, current.metadata.name!, {
            type: "merge",
            patch: { spec: { ingress: edited.spec!.ingress } },
          }, { namespace: current.metadata.namespace });
          const pk = key(current.metadata.namespace, current.metadata.name);
          seen = () =>
            firstTime(informers.policies, (s) => s.items.get(pk)?.spec?.ingress?.[0]?.ports?.[0]?.port === port);
        } else if (kind === "add") {
          const p = benchPod(size, nextIndex++);
          yield* Effect.promise(() => addNetns([netnsName(p.netns)]));
          live.push(p);
          const pod = podObject(p);
          after = { ...before, pods: [...before.pods, pod], danmEps: [...before.danmEps, danmEpObject(p, "")] };
          write = createPod(p);
          const k = key(p.namespace, `${p.name}-net1`);
          seen = () => firstTime(informers.danmEps, (s) => s.items.has(k));
        } else {
          const idx = Math.floor(random() * live.length);
          const p = live[idx];
          live.splice(idx, 1);
          const k = key(p.namespace, p.name);
          after = {
            ...before,
            pods: before.pods.filter((x) => key(x.metadata.namespace, x.metadata.name) !== k),
            danmEps: before.danmEps.filter((x) => key(x.metadata.namespace, x.spec.Pod) !== k),
          };
          // As the kubelet and the CNI DEL would: the pod object goes, its DanmEp with it.
          write = Effect.andThen(
            kube.delete(PodResource, p.name, { namespace: p.namespace }),
            kube.delete(DanmEpResource, `${p.name}-net1`, { namespace: p.namespace }),
          );
          seen = () => firstTime(informers.danmEps, (s) => !s.items.has(key(p.namespace, `${p.name}-net1`)));
        }
        const next = expectedTables(after, size.nodes);
        const affected = new Map([...next].filter(([netns, script]) => expected.get(netns) !== script));
        const floorFiber = yield* Effect.forkChild(seen());
        const t0 = wallNow(), nftBefore = writes.nftMs, patchesBefore = writes.patches;
        yield* Effect.orDie(write);
        const doneAt = yield* Effect.promise(() => writes.until(affected, t0, o.timeoutMs));
        const floorAt = yield* Fiber.join(floorFiber);
        const timedOut = doneAt === undefined;
        results.push({
          kind,
          affected: affected.size,
          convergeMs: timedOut ? o.timeoutMs : doneAt - t0,
          timedOut,
          floorMs: floorAt - t0,
          nftMs: writes.nftMs - nftBefore,
          patched: writes.patches - patchesBefore,
        });
        log(
          `change ${c + 1}/${o.changes} ${kind}: ${affected.size} affected pods converged in ` +
            `${timedOut ? `> ${o.timeoutMs}` : (doneAt - t0).toFixed(1)} ms (own watch event ${
              (floorAt - t0).toFixed(1)
            } ms; nft transactions ${(writes.nftMs - nftBefore).toFixed(0)} ms over all agents, ${
              writes.patches - patchesBefore
            } tables patched)`,
        );
        if (timedOut) {
          const lagging = [...affected].filter(([netns, s]) => writes.last.get(netns)?.script !== s).length;
          log(
            `  ${lagging} of ${affected.size} affected pods never got their ruleset${
              writes.failure ? `: ${writes.failure}` : ""
            }`,
          );
        }
        expected = next;
        // Kernel read-back of one affected pod: its table as the kernel has it vs the predicted ruleset's.
        const sample = [...affected].find(([netns]) => live.some((p) => p.netns === netns));
        if (sample) {
          const [netns, script] = sample;
          const want = script === undefined ? undefined : yield* Effect.promise(() => listingOf(scratch, script));
          const got = yield* Effect.promise(() => kernelListing(netns));
          kernelChecks++;
          if (want !== got) {
            kernelMismatches++;
            log(`  kernel read-back of ${netns}: its table differs from the predicted ruleset`);
          }
        }
      }
      return { programAllMs, changes: results, kernelChecks, kernelMismatches, setupMs };
    })));
  } finally {
    for (const w of workers) w.terminate();
    await driver.dispose();
    await api.stop();
    await Deno.remove(api.dir, { recursive: true }).catch(() => {});
    for (const ns of [...Deno.readDirSync("/run/netns")].map((e) => e.name)) {
      if (ns.startsWith(size.prefix)) await run(["ip", "netns", "del", ns]).catch(() => {});
    }
  }
}
