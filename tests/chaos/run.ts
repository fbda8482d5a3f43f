// The chaos run (`deno task chaos`, and a short one in the e2e tier): the whole danm stack on a real etcd +
// kube-apiserver — webhook, svcwatcher, and per node a network namespace with the real node agent and a fake kubelet
// (tests/harness/stack.ts) — while pods churn and a seeded fault injector (faults.ts) breaks things. Then everything
// is given the documented settle time and checked (check.ts), with the pods still running and once more after every
// pod was deleted.
//
// A cycle is one pod's life: created, Running, deleted, gone (its replacement is created at once). Workers churn
// concurrently, each taking a random running pod; `static-<k>` pods come back under the same name (a StatefulSet).
// The fake kubelets behave like kubelet under trouble (they retry failed sandboxes and DELs); they do not call CNI GC
// (containerd does not), so what a lost DEL leaves is for danm's own reclaimers.
import { Effect } from "effect";
import { PodResource } from "../../core/api/k8s.ts";
import { type ApiServer, startApiServer } from "../harness/apiserver.ts";
import { pick } from "../integration/api/rest.ts";
import { sleep } from "../harness/proc.ts";
import { eventually } from "../harness/eventually.ts";
import { type Stack, startStack } from "../harness/stack.ts";
import { checkStack, countByKind, type Violation, type ViolationKind, ViolationKinds } from "./check.ts";
import {
  type FaultContext,
  type FaultKind,
  FaultKinds,
  faultSchedule,
  InFlight,
  inject,
  podFaultAnnotation,
} from "./faults.ts";
import { makeRng, substream } from "./rng.ts";
import { bridgeConf, BridgeName, Namespace, networks, podManifest } from "./scenario.ts";

export interface ChaosOptions {
  readonly cycles: number;
  readonly seed: number;
  readonly nodes: number;
  /** Pods kept alive per node. Default 3. */
  readonly podsPerNode?: number;
  /** How many of them are `static-<k>` pods. Default 4. */
  readonly statics?: number;
  /** A fault every this many cycles on average. Default 20. */
  readonly cyclesPerFault?: number;
  /** The node agents' reclaim period and grace (flags), the settle time they imply. Default 5 s and 10 s. */
  readonly reclaimPeriodS?: number;
  readonly reclaimGraceS?: number;
  /** Longest settle before the check counts what is left. Default 120 s. */
  readonly settleTimeoutS?: number;
  /** Ends the churn early (the settle and the checks still run, the report says how many cycles were done). */
  readonly stop?: AbortSignal;
  readonly log?: (line: string) => void;
}

export interface ChaosReport {
  readonly seed: number;
  readonly cycles: number;
  readonly nodes: number;
  readonly faults: Record<FaultKind, number>;
  /** Faults of the seed's schedule (faults.ts faultSchedule) within the run's cycles that the churn ended before. */
  readonly faults_unfired: number;
  readonly duplicates: number;
  readonly leaked_reservations: number;
  readonly stray_links: number;
  readonly stray_netns: number;
  readonly orphan_danmeps: number;
  readonly stray_records: number;
  readonly mismatches: number;
  readonly pods_not_running: number;
  /** Stack processes that exited on their own (restarted, as Kubernetes would): not a violation, but evidence. */
  readonly process_exits: ReadonlyArray<string>;
  /** From the end of churn until the check with pods running found nothing (or the settle timeout). */
  readonly settle_s: number;
  /** From the deletion of every pod until nothing of them was left (or the settle timeout). */
  readonly settle_empty_s: number;
  readonly violations: number;
  readonly churn_s: number;
  readonly total_s: number;
  /** Violations found (with evidence), both checks. */
  readonly evidence: ReadonlyArray<Violation & { readonly phase: "running" | "empty" }>;
}

const isRunning = (p: { status?: { phase?: string; conditions?: ReadonlyArray<{ type: string; status: string }> } }) =>
  p.status?.phase === "Running" && (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const t0 = Date.now();
  const log = o.log ?? ((l: string) => console.log(`[chaos] ${l}`));
  // Churn (which node a pod goes to, which pod ends next) and faults (which kind after how many cycles; each fault's
  // own choices) draw from separate streams of the seed, so the fault schedule does not depend on the churn's timing.
  const rng = makeRng(o.seed);
  const schedule = substream(o.seed, 0);
  const podsPerNode = o.podsPerNode ?? 3;
  const statics = o.statics ?? 4;
  const population = o.nodes * podsPerNode;
  const cyclesPerFault = o.cyclesPerFault ?? 20;
  const reclaimPeriodS = o.reclaimPeriodS ?? 5, reclaimGraceS = o.reclaimGraceS ?? 10;
  const settleTimeoutS = o.settleTimeoutS ?? 120;
  const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1);

  const api: ApiServer = await startApiServer();
  const hostLocal = await Deno.makeTempDir({ prefix: "danm-chaos-host-local-" });
  const inFlight = new InFlight();
  let stack: Stack | undefined;
  try {
    stack = await startStack({ url: api.url, kubeconfigPath: api.kubeconfigPath, pki: api.pki }, {
      nodes: o.nodes,
      nodeBridges: [BridgeName],
      cniConfigs: { "chaosbr.conf": bridgeConf(hostLocal) },
      vxlanMode: "unicast",
      fakelet: { persistent: true },
      agentFlags: { "reclaim-period": `${reclaimPeriodS}s`, "reclaim-grace": `${reclaimGraceS}s` },
      onCni: (node, e) => inFlight.update(node, e),
    });
    const s = stack;
    log(`stack up with ${o.nodes} nodes after ${elapsed()} s (seed ${rng.seed})`);
    const nets = await s.apply(networks);
    if (nets.refused.length > 0) throw new Error(`networks refused: ${JSON.stringify(nets.refused)}`);

    // ---- Pods: the current view (polled), creation with retries, deletion until gone.
    let pods = new Map<string, { uid: string; running: boolean; node: string }>();
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const listed = await s.kubeRun(s.kube.list(PodResource, { namespace: Namespace })).catch(() => undefined);
        if (listed) {
          pods = new Map(listed.items.map((p) => [p.metadata.name ?? "", {
            uid: p.metadata.uid ?? "",
            running: isRunning(p) && !p.metadata.deletionTimestamp,
            node: p.spec.nodeName ?? "",
          }]));
        }
        await sleep(200);
      }
    })();

    const faults = Object.fromEntries(FaultKinds.map((k) => [k, 0])) as Record<FaultKind, number>;
    const armed: Array<{ kind: FaultKind; annotation: string }> = [];
    let podSeq = 0;
    const collection = `/api/v1/namespaces/${Namespace}/pods`;
    /** Creates pod `name` on a random node, retrying while the apiserver or the webhook is away. */
    const createPod = async (name: string, staticIndex?: number) => {
      const fault = armed.shift();
      const deadline = Date.now() + 300_000;
      while (true) {
        const node = rng.pick(s.nodes.map((n) => n.name).sort());
        const manifest = podManifest(name, node, {
          ...(staticIndex === undefined ? {} : { staticIndex }),
          ...(fault ? { annotations: { [fault.annotation]: "true" } } : {}),
        });
        const r = await s.rest.call("POST", collection, manifest).catch((e) => ({ status: 0, body: String(e) }));
        if (r.status === 201) {
          if (fault) {
            faults[fault.kind]++;
            log(`fault ${fault.kind}: pod ${name} on ${node}`);
          }
          return;
        }
        if (Date.now() > deadline) throw new Error(`creating pod ${name}: ${r.status} ${JSON.stringify(r.body)}`);
        await sleep(250);
      }
    };
    /** Deletes a pod as kubectl does and waits until it is gone; false after the timeout. */
    const deletePod = async (name: string, uid: string, timeoutMs = 300_000) => {
      const deadline = Date.now() + timeoutMs;
      let sent = false;
      while (Date.now() < deadline) {
        const cur = pods.get(name);
        if (!cur || cur.uid !== uid) {
          // The poll may lag: confirm with a read.
          const r = await s.rest.call("GET", `${collection}/${name}`).catch(() => undefined);
          if (r && (r.status === 404 || pick(r.body, "metadata", "uid") !== uid)) return true;
        }
        if (!sent) {
          const r = await s.rest.call("DELETE", `${collection}/${name}`, {
            apiVersion: "v1",
            kind: "DeleteOptions",
            preconditions: { uid },
          }).catch(() => undefined);
          sent = r !== undefined && [200, 202, 404, 409].includes(r.status);
        }
        await sleep(200);
      }
      return false;
    };

    // Initial population.
    const staticNames = Array.from({ length: Math.min(statics, population) }, (_, k) => `static-${k}`);
    for (const [k, name] of staticNames.entries()) await createPod(name, k);
    for (let i = staticNames.length; i < population; i++) await createPod(`p-${podSeq++}`);
    await eventually(
      "the first pods to run",
      () => {
        s.assertAlive();
        return Promise.resolve([...pods.values()].filter((p) => p.running).length >= population ? true : undefined);
      },
      300_000,
      500,
    );
    log(`${population} pods running after ${elapsed()} s; churning ${o.cycles} cycles`);

    // ---- Churn and faults.
    const churnStart = Date.now();
    let cycles = 0, stuck = 0;
    let done = false;
    const busy = new Set<string>();
    const worker = async () => {
      while (!done && !o.stop?.aborted && cycles + busy.size < o.cycles) {
        const candidates = [...pods].filter(([n, p]) => p.running && !busy.has(n)).map(([n]) => n).sort();
        if (candidates.length === 0) {
          await sleep(100);
          continue;
        }
        const name = rng.pick(candidates);
        const uid = pods.get(name)!.uid;
        busy.add(name);
        try {
          const k = staticNames.indexOf(name);
          if (await deletePod(name, uid)) {
            if (++cycles % 100 === 0) log(`${cycles} cycles after ${elapsed()} s`);
          } else {
            stuck++;
            log(`pod ${name} not gone after 300 s`);
            if (k >= 0) continue; // its name is still taken
          }
          await createPod(k >= 0 ? name : `p-${podSeq++}`, k >= 0 ? k : undefined).catch((e) => {
            stuck++;
            log(String(e));
          });
        } finally {
          busy.delete(name);
        }
      }
    };
    let nodeSeq = o.nodes;
    const ctx: Omit<FaultContext, "rng"> = {
      stack: s,
      api,
      inFlight,
      log: (l) => log(`fault: ${l}`),
      armPodFault: (kind, annotation) => armed.push({ kind, annotation }),
      nextNodeName: () => `node-${++nodeSeq}`,
    };
    // Kubernetes restarts a component that exits (the node agent gives up after 60 s without an apiserver): so does
    // the run, counting each.
    const exits: string[] = [];
    const supervisor = (async () => {
      while (polling) {
        for (const c of s.crashed()) {
          exits.push(c.name);
          log(`${c.name} exited on its own (code ${c.code}); restarting it`);
          s.respawn(c.name);
        }
        await sleep(1000);
      }
    })();
    // The pod garbage collector (kube-controller-manager's, which the stack does not run): pods bound to a node that
    // no longer exists are deleted at once, every second (the real one waits 40 s after the node went).
    const podGc = (async () => {
      while (polling) {
        const nodes = new Set(s.nodes.map((n) => n.name));
        for (const [name, p] of [...pods].filter(([, p]) => !nodes.has(p.node))) {
          const r = await s.rest.call("DELETE", `${collection}/${name}`, {
            apiVersion: "v1",
            kind: "DeleteOptions",
            gracePeriodSeconds: 0,
            preconditions: { uid: p.uid },
          }).catch(() => undefined);
          if (r?.status === 200) log(`pod GC: deleted ${name} of removed ${p.node}`);
        }
        await sleep(1000);
      }
    })();
    // Each scheduled fault is applied once the churn has reached its cycle (later only while the one before it is
    // still running); one that cannot be applied now (no call in flight to hit) is tried again, so the kinds and
    // their order never depend on timing.
    const planned = faultSchedule(schedule, cyclesPerFault, o.cycles);
    let unfired = 0;
    const injector = async () => {
      for (const [i, fault] of planned.entries()) {
        while (!done && cycles < fault.cycle) await sleep(50);
        let applied = false;
        while (!done && !applied) {
          // Its own stream: the same choices (victim, signal, down time) for fault i in every run of the seed.
          applied = await inject({ ...ctx, rng: substream(o.seed, i + 1) }, fault.kind);
          if (!applied) {
            log(`fault ${fault.kind} (#${i + 1}) could not be applied at cycle ${cycles}; trying again`);
            await sleep(1000);
          }
        }
        if (!applied) {
          unfired = planned.length - i;
          log(`churn ended before ${unfired} scheduled fault(s), from #${i + 1} at cycle ${fault.cycle}`);
          return;
        }
        log(`fault #${i + 1} ${fault.kind}: scheduled at cycle ${fault.cycle}, applied at ${cycles}`);
        // Pod faults are counted when a pod carries them (createPod).
        if (podFaultAnnotation[fault.kind] === undefined) faults[fault.kind]++;
      }
    };
    const workers = Array.from({ length: Math.max(2, Math.ceil(o.nodes / 2)) }, () => worker());
    const injecting = injector();
    await Promise.all(workers);
    done = true;
    await injecting;
    const churnS = (Date.now() - churnStart) / 1000;
    log(`churn done: ${cycles} cycles in ${churnS.toFixed(0)} s; faults ${JSON.stringify(faults)}`);

    // ---- Settle, then check with the pods running.
    const settle = async () => {
      const started = Date.now();
      let last: Violation[] = [];
      while (true) {
        last = await checkStack(s, { graceSeconds: reclaimGraceS }).catch((e) => [{
          kind: "mismatches" as const,
          evidence: `check failed: ${e}`,
        }]);
        const seconds = (Date.now() - started) / 1000;
        if (last.length === 0 || seconds > settleTimeoutS) return { seconds, violations: last };
        await sleep(1000);
      }
    };
    const running = await settle();
    log(`check with pods running: ${running.violations.length} violation(s) after ${running.seconds.toFixed(1)} s`);
    for (const v of running.violations) log(`  ${v.kind}: ${v.evidence}`);

    // ---- Delete every pod; nothing of them may remain.
    polling = false;
    await Promise.all([poller, podGc, supervisor]);
    const all = await s.kubeRun(s.kube.list(PodResource, { namespace: Namespace }));
    await Promise.all(all.items.map((p) => deletePodDirect(s, p.metadata.name ?? "")));
    await eventually(
      "every pod to be gone",
      async () => {
        const left = await s.kubeRun(s.kube.list(PodResource, { namespace: Namespace })).catch(() => undefined);
        return left && left.items.length === 0 ? true : undefined;
      },
      300_000,
      500,
    ).catch((e) => log(String(e)));
    const empty = await settle();
    log(`check after deleting every pod: ${empty.violations.length} violation(s) after ${empty.seconds.toFixed(1)} s`);
    for (const v of empty.violations) log(`  ${v.kind}: ${v.evidence}`);

    const evidence = [
      ...running.violations.map((v) => ({ ...v, phase: "running" as const })),
      ...empty.violations.map((v) => ({ ...v, phase: "empty" as const })),
    ];
    const counts = countByKind(evidence);
    const byKind = (k: ViolationKind) => counts[k];
    return {
      seed: rng.seed,
      cycles,
      nodes: o.nodes,
      faults,
      faults_unfired: unfired,
      duplicates: byKind("duplicates"),
      leaked_reservations: byKind("leaked_reservations"),
      stray_links: byKind("stray_links"),
      stray_netns: byKind("stray_netns"),
      orphan_danmeps: byKind("orphan_danmeps"),
      stray_records: byKind("stray_records"),
      mismatches: byKind("mismatches"),
      pods_not_running: byKind("pods_not_running") + stuck,
      process_exits: exits,
      settle_s: Number(running.seconds.toFixed(1)),
      settle_empty_s: Number(empty.seconds.toFixed(1)),
      violations: ViolationKinds.reduce((a, k) => a + counts[k], 0) + stuck,
      churn_s: Number(churnS.toFixed(1)),
      total_s: Number(elapsed()),
      evidence,
    };
  } catch (e) {
    if (stack) log(await stack.logs(15));
    throw e;
  } finally {
    await stack?.stop();
    await api.stop();
    await Deno.remove(api.dir, { recursive: true }).catch(() => {});
    await Deno.remove(hostLocal, { recursive: true }).catch(() => {});
  }
}

/** A plain DELETE (the pod's kubelet runs the DEL). */
async function deletePodDirect(s: Stack, name: string): Promise<void> {
  await s.kubeRun(Effect.ignore(s.kube.delete(PodResource, name, { namespace: Namespace })));
}
