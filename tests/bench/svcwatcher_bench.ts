// deno task bench:svcwatcher — svcwatcher on a real kube-apiserver (its own, started here): 1,000 pods with
// their DanmEps (every fifth dual-stack), 100 Services of 10 pods each.
//
//   resync   controller start (leader election included) → every slice of every Service converged
//   change   a pod change (readiness flip, or a label change that goes through the DanmEp label sync) →
//            the slices show it; p50/p99 over many changes, made one at a time
//   floor    the baseline of the same run: the same write → the pod's own watch event reaching the observer,
//            i.e. the apiserver's write + watch latency any controller pays at least once
//
// Target: change p99 ≤ 1 s. Readable lines, then one JSON object as the last line.
import * as k8s from "@kubernetes/client-node";
import { Effect, Fiber, Layer, ManagedRuntime, Stream, SubscriptionRef } from "effect";
import { layerLiveKube } from "../../adapters/kube/live.ts";
import { DanmEpResource } from "../../core/api/danm.ts";
import {
  type EndpointSlice,
  EndpointSliceResource,
  NamespaceResource,
  type Pod,
  PodResource,
  ServiceResource,
} from "../../core/api/k8s.ts";
import { type Informer, type InformerState, Kube } from "../../core/ports/kube.ts";
import { runSvcwatcher } from "../../core/svcwatcher/controller.ts";
import { SvcwatcherMetrics } from "../../core/svcwatcher/metrics.ts";
import { startApiServer } from "../harness/apiserver.ts";
import { installDanmCrds } from "../integration/api/danm_crds.ts";

const PODS = 1000, SERVICES = 100, CONCURRENCY = 24;
const CHANGES = Number(Deno.env.get("BENCH_CHANGES") ?? 300);
const ns = "bench";
const log = (s: string) => console.log(`[bench:svcwatcher] ${s}`);

interface PodState {
  readonly name: string;
  readonly service: number;
  readonly ips: ReadonlyArray<string>;
  ready: boolean;
  selected: boolean;
}

const pods: PodState[] = Array.from({ length: PODS }, (_, i) => ({
  name: `pod-${i}`,
  service: i % SERVICES,
  ips: [`10.${100 + (i >> 8)}.${i & 255}.1`, ...(i % 5 === 0 ? [`fd00::${(i + 1).toString(16)}`] : [])],
  ready: i % 10 !== 0,
  selected: true,
}));

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))];
};
const ms = (n: number) => Math.round(n * 10) / 10;

/** ip → ready, over every owned slice. */
function published(s: InformerState<EndpointSlice>): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const slice of s.items.values()) {
    for (const e of slice.endpoints) out.set(e.addresses[0], e.conditions?.ready === true);
  }
  return out;
}

const showsPod = (view: Map<string, boolean>, p: PodState) =>
  p.ips.every((ip) => p.selected ? view.get(ip) === p.ready : !view.has(ip));

const expectedEndpoints = () => pods.reduce((n, p) => n + (p.selected ? p.ips.length : 0), 0);

/** Resolves with the time at which `done(state)` first holds (checked on every change of the informer). */
const firstTime = <A>(informer: Informer<A>, done: (s: InformerState<A>) => boolean, timeoutMs = 30_000) =>
  SubscriptionRef.changes(informer.state).pipe(
    Stream.filter(done),
    Stream.take(1),
    Stream.runDrain,
    Effect.map(() => performance.now()),
    Effect.timeoutOrElse({
      duration: timeoutMs,
      orElse: () => Effect.die(new Error(`not converged within ${timeoutMs} ms`)),
    }),
  );

const api = await startApiServer();
try {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(api.kubeconfigPath);
  await installDanmCrds(kc);
  const live = () => layerLiveKube({ config: { _tag: "Kubeconfig", path: api.kubeconfigPath } }).pipe(Layer.orDie);
  // The driver/observer and the controller use separate clients and informers, as separate processes would.
  const driver = ManagedRuntime.make(live());
  const controllerLayer = live();

  const result = await driver.runPromise(Effect.scoped(Effect.gen(function* () {
    const kube = yield* Kube;
    // ---- Setup ----------------------------------------------------------------------------------------
    const setupStart = performance.now();
    yield* kube.create(NamespaceResource, { metadata: { name: ns } });
    yield* Effect.forEach(Array.from({ length: SERVICES }, (_, i) => i), (i) =>
      kube.create(ServiceResource, {
        metadata: {
          name: `svc-${i}`,
          namespace: ns,
          annotations: { "danm.io/selector": JSON.stringify({ app: `svc-${i}` }), "danm.io/network": "internal" },
        },
        spec: { clusterIP: "None", ports: [{ name: "http", port: 80, targetPort: "web", protocol: "TCP" }] },
      }), { concurrency: CONCURRENCY, discard: true });
    yield* Effect.forEach(pods, (p) =>
      Effect.gen(function* () {
        const pod = yield* kube.create(PodResource, {
          metadata: { name: p.name, namespace: ns, labels: { app: `svc-${p.service}` } },
          spec: {
            nodeName: `node-${p.service % 7}`,
            containers: [{ name: "c", image: "example.invalid/app", ports: [{ name: "web", containerPort: 8080 }] }],
          },
        });
        yield* kube.patch(PodResource, p.name, {
          type: "merge",
          patch: { status: { phase: "Running", conditions: [{ type: "Ready", status: p.ready ? "True" : "False" }] } },
        }, { namespace: ns, subresource: "status" });
        yield* kube.create(DanmEpResource, {
          metadata: { name: `ep-${p.name}`, namespace: ns, labels: { app: `svc-${p.service}` } },
          spec: {
            NetworkName: "internal",
            EndpointID: `ep-${p.name}`,
            Interface: { Name: "eth1", Address: `${p.ips[0]}/16`, AddressIPv6: p.ips[1] ? `${p.ips[1]}/64` : "" },
            Pod: p.name,
            PodUID: pod.metadata.uid!,
            apiType: "DanmNet",
          },
        });
      }), { concurrency: CONCURRENCY, discard: true });
    const setupMs = performance.now() - setupStart;
    log(`created ${SERVICES} Services, ${PODS} pods, ${PODS} DanmEps in ${(setupMs / 1000).toFixed(1)} s`);

    // ---- Observer ---------------------------------------------------------------------------------------
    const slices = yield* kube.informer(EndpointSliceResource, {
      namespace: ns,
      labelSelector: "endpointslice.kubernetes.io/managed-by=svcwatcher.danm.io",
    });
    const podInformer: Informer<Pod> = yield* kube.informer(PodResource, { namespace: ns });
    yield* slices.synced;
    yield* podInformer.synced;

    // ---- Full resync --------------------------------------------------------------------------------------
    const metrics = new SvcwatcherMetrics();
    const started = performance.now();
    const controller = yield* runSvcwatcher({
      identity: "bench",
      workers: 4,
      lease: { namespace: ns, name: "danm-svcwatcher" },
    }, metrics).pipe(Effect.provide(controllerLayer), Effect.forkScoped);
    const total = expectedEndpoints();
    const resyncAt = yield* firstTime(slices, (s) => {
      const view = published(s);
      return view.size === total && pods.every((p) => showsPod(view, p));
    }, 120_000);
    const resyncMs = resyncAt - started;
    const sliceCount = (yield* slices.list).length;
    log(`full resync: ${ms(resyncMs)} ms from controller start to ${sliceCount} slices / ${total} endpoints`);

    // ---- Changes, one at a time -----------------------------------------------------------------------------
    const latencies: number[] = [], floors: number[] = [];
    const byKind: Record<string, number[]> = { readiness: [], label: [] };
    for (let i = 0; i < CHANGES; i++) {
      const p = pods[Math.floor(Math.random() * PODS)];
      const kind = i % 4 === 3 ? "label" : "readiness";
      if (kind === "label") p.selected = !p.selected;
      else p.ready = !p.ready;
      const podDone = (s: InformerState<Pod>) => {
        const o = s.items.get(`${ns}/${p.name}`);
        if (!o) return false;
        const ready = o.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
        return ready === p.ready && (o.metadata.labels?.app === `svc-${p.service}`) === p.selected;
      };
      const floorFiber = yield* Effect.forkChild(firstTime(podInformer, podDone));
      const sliceFiber = yield* Effect.forkChild(firstTime(slices, (s) => showsPod(published(s), p)));
      const t0 = performance.now();
      if (kind === "label") {
        yield* kube.patch(PodResource, p.name, {
          type: "merge",
          patch: { metadata: { labels: { app: p.selected ? `svc-${p.service}` : null } } },
        }, { namespace: ns });
      } else {
        yield* kube.patch(PodResource, p.name, {
          type: "merge",
          patch: { status: { conditions: [{ type: "Ready", status: p.ready ? "True" : "False" }] } },
        }, { namespace: ns, subresource: "status" });
      }
      const floorAt = yield* Fiber.join(floorFiber);
      const doneAt = yield* Fiber.join(sliceFiber);
      latencies.push(doneAt - t0);
      floors.push(floorAt - t0);
      byKind[kind].push(doneAt - t0);
    }
    const errors = metrics.syncs.get({ result: "error" });
    yield* Fiber.interrupt(controller);
    return { setupMs, resyncMs, latencies, floors, byKind, errors, total };
  })));
  await driver.dispose();

  const { latencies, floors, byKind } = result;
  const p50 = percentile(latencies, 50), p99 = percentile(latencies, 99);
  log(
    `${CHANGES} changes: pod change → converged slices p50 ${ms(p50)} ms, p99 ${ms(p99)} ms, max ${
      ms(Math.max(...latencies))
    } ms`,
  );
  log(
    `  readiness flips (${byKind.readiness.length}): p50 ${ms(percentile(byKind.readiness, 50))} ms, p99 ${
      ms(percentile(byKind.readiness, 99))
    } ms`,
  );
  log(
    `  label changes via DanmEp sync (${byKind.label.length}): p50 ${ms(percentile(byKind.label, 50))} ms, p99 ${
      ms(percentile(byKind.label, 99))
    } ms`,
  );
  log(
    `baseline (write → the pod's own watch event): p50 ${ms(percentile(floors, 50))} ms, p99 ${
      ms(percentile(floors, 99))
    } ms`,
  );
  log(`target p99 ≤ 1000 ms: ${p99 <= 1000 ? "met" : "MISSED"}; sync errors (lost races, retried): ${result.errors}`);
  console.log(JSON.stringify({
    pods: PODS,
    services: SERVICES,
    endpoints: result.total,
    changes: CHANGES,
    p50_ms: ms(p50),
    p99_ms: ms(p99),
    max_ms: ms(Math.max(...latencies)),
    readiness_p99_ms: ms(percentile(byKind.readiness, 99)),
    label_p99_ms: ms(percentile(byKind.label, 99)),
    resync_ms: ms(result.resyncMs),
    baseline_p50_ms: ms(percentile(floors, 50)),
    baseline_p99_ms: ms(percentile(floors, 99)),
    setup_ms: ms(result.setupMs),
    sync_errors: result.errors,
    target_p99_met: p99 <= 1000,
  }));
} finally {
  await api.stop();
  await Deno.remove(api.dir, { recursive: true }).catch(() => {});
}
