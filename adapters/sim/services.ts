// svcwatcher in the simulation: the controller runs over the in-memory API until the danm Services' Endpoints stop
// changing, and the report lists each such Service's addresses.
import { Effect, type Scope } from "effect";
import { serviceSelection } from "../../core/api/annotations.ts";
import { EndpointsResource, type Service, ServiceResource } from "../../core/api/k8s.ts";
import { runController } from "../../core/svcwatcher/controller.ts";
import { Kube, type KubeService } from "../../core/ports/kube.ts";
import type { SimOutcome } from "../../core/sim/report.ts";

/** The Services that select pods over danm networks (svcwatcher's annotation). */
export const danmServices = (kube: KubeService) =>
  Effect.gen(function* () {
    const all = (yield* kube.list(ServiceResource).pipe(Effect.orDie)).items;
    return yield* Effect.filter(all, (s) =>
      serviceSelection(s.metadata.annotations ?? {}).pipe(
        Effect.map((sel) => sel !== undefined),
        Effect.orElseSucceed(() => false),
      ));
  });

/** Starts svcwatcher (for the rest of the scope) and waits, up to `settleMs`, for the Endpoints to stay unchanged. */
export const runSvcwatcherUntilSettled = (
  kube: KubeService,
  settleMs: number,
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    yield* Effect.forkScoped(
      runController({ identity: "danm-sim" }).pipe(Effect.provideService(Kube, kube), Effect.ignore),
    );
    const snapshot = Effect.map(
      kube.list(EndpointsResource).pipe(Effect.orDie),
      (l) => JSON.stringify(l.items.map((e) => [e.metadata.name, e.subsets])),
    );
    let last = "", stable = 0;
    const deadline = Date.now() + settleMs;
    while (stable < 3 && Date.now() < deadline) {
      yield* Effect.sleep("100 millis");
      const s = yield* snapshot;
      stable = s === last ? stable + 1 : 0;
      last = s;
    }
  });

/** A danm Service as the report lists it: its networks and the Endpoints svcwatcher made. */
export const serviceEndpoints = (kube: KubeService, s: Service): Effect.Effect<SimOutcome["services"][number]> =>
  Effect.gen(function* () {
    const ns = s.metadata.namespace ?? "default", name = s.metadata.name ?? "";
    const ep = yield* kube.get(EndpointsResource, name, { namespace: ns }).pipe(
      Effect.map((e) => e as typeof e | undefined),
      Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
      Effect.orDie,
    );
    const sel = yield* serviceSelection(s.metadata.annotations ?? {}).pipe(Effect.orElseSucceed(() => undefined));
    const ready = (ep?.subsets ?? []).flatMap((sub) => (sub.addresses ?? []).map((a) => a.ip));
    const notReady = (ep?.subsets ?? []).flatMap((sub) => (sub.notReadyAddresses ?? []).map((a) => a.ip));
    return {
      namespace: ns,
      name,
      networks: (sel?.networks ?? []).map((n) => `${n.kind} ${n.name}`),
      endpoints: ready,
      notReady,
      ports: (s.spec?.ports ?? []).map((p) => p.port),
    };
  });
