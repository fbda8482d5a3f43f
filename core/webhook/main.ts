// The webhook program: certificate bootstrap (optional), caches, VNI claims and their reconciler, the admission
// endpoints and the HTTPS server, for as long as the surrounding scope lives. cmd/webhook.ts provides the Kube, Fs
// and Http layers and flags; tests and the benchmark start it in-process.
import { Effect, type Scope, Stream } from "effect";
import { type TenantNetwork, TenantNetworkResource } from "../api/danm.ts";
import type { NamingScheme } from "../podnetworks/naming.ts";
import type { Fs } from "../ports/filesystem.ts";
import type { Http } from "../ports/http.ts";
import { Kube } from "../ports/kube.ts";
import { type Admission, makeAdmission } from "./admit.ts";
import { bootstrapCertificates, type BootstrapConfig, type BootstrapError } from "./bootstrap.ts";
import { type Claims, holderOfNetwork, makeClaims, vniOf } from "./claims.ts";
import { WebhookMetrics } from "./metrics.ts";
import { VniClaimAnnotation } from "./networks.ts";
import { type RunningServer, type ServerError, serveWebhook } from "./server.ts";
import { type ClusterView, makeClusterView } from "./state.ts";

export interface WebhookConfig {
  readonly hostname: string;
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
  readonly certReloadIntervalMs: number;
  /** Namespace holding the VNI claim Leases (the webhook's own). */
  readonly claimNamespace: string;
  /** Age after which a claim no network carries is reclaimed; must exceed an admission round trip. */
  readonly claimGraceSeconds: number;
  readonly sweepIntervalMs: number;
  readonly tenantConfigName?: string;
  readonly namingScheme: NamingScheme;
  /** Issue and rotate the serving certificate ourselves; re-checked every `resyncMs`. */
  readonly bootstrap?: BootstrapConfig & { readonly resyncMs: number };
  /** Keep this many raw handler durations (benchmark). */
  readonly keepSamples?: number;
}

export interface RunningWebhook {
  readonly server: RunningServer;
  readonly metrics: WebhookMetrics;
  readonly view: ClusterView;
  readonly claims: Claims;
  readonly admission: Admission;
  /** One sweep now (tests). */
  readonly sweep: Effect.Effect<ReadonlyArray<string>>;
}

/**
 * The claim reconciler: deleting a TenantNetwork frees its VNI at once (watch event); the periodic sweep catches
 * everything else (claims of refused requests, after the grace period). Returns one sweep, for tests.
 */
export const startReconciler = (
  claims: Claims,
  metrics: WebhookMetrics,
  intervalMs: number,
): Effect.Effect<Effect.Effect<ReadonlyArray<string>>, never, Kube | Scope.Scope> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const tenantNets = yield* kube.informer(TenantNetworkResource);
    const onChange = (net: TenantNetwork, deleted: boolean) =>
      Effect.gen(function* () {
        const holder = holderOfNetwork(net), key = vniOf(net);
        if (holder === undefined || key === undefined) return;
        if (!deleted) return yield* claims.confirm(key, holder);
        if (yield* claims.release(key, holder)) metrics.claims.inc({ result: "released" });
      }).pipe(Effect.catch((e) => Effect.logWarning(`reconciler: ${e.message}`)));
    yield* tenantNets.changes.pipe(
      Stream.runForEach((ev) => {
        switch (ev._tag) {
          case "Deleted":
            return onChange(ev.object, true);
          case "Added":
          case "Updated":
            // Only claims taken for a generated name need it; the others are left untouched by confirm.
            return ev.object.metadata.annotations?.[VniClaimAnnotation] === undefined
              ? Effect.void
              : onChange(ev.object, false);
          case "Synced":
            return Effect.void;
        }
      }),
      Effect.catch((e) => Effect.logError(`reconciler stopped watching TenantNetworks: ${e.message}`)),
      Effect.forkScoped,
    );
    const sweepOnce = claims.sweep.pipe(
      Effect.tap((names) => Effect.sync(() => metrics.claims.inc({ result: "reclaimed" }, names.length))),
      Effect.catch((e) => Effect.as(Effect.logWarning(`sweep: ${e.message}`), [] as ReadonlyArray<string>)),
    );
    yield* Effect.sleep(intervalMs).pipe(Effect.andThen(sweepOnce), Effect.forever, Effect.forkScoped);
    return sweepOnce;
  });

export const startWebhook = (
  config: WebhookConfig,
): Effect.Effect<RunningWebhook, BootstrapError | ServerError, Kube | Fs | Http | Scope.Scope> =>
  Effect.gen(function* () {
    if (config.bootstrap) {
      const bootstrap = config.bootstrap;
      yield* bootstrapCertificates(bootstrap);
      yield* Effect.sleep(bootstrap.resyncMs).pipe(
        Effect.andThen(bootstrapCertificates(bootstrap)),
        Effect.catch((e) => Effect.logWarning(e.message)),
        Effect.forever,
        Effect.forkScoped,
      );
    }
    const metrics = new WebhookMetrics(config.keepSamples ?? 0);
    const view = yield* makeClusterView(config.tenantConfigName ? { tenantConfigName: config.tenantConfigName } : {});
    const claims = yield* makeClaims({ namespace: config.claimNamespace, graceSeconds: config.claimGraceSeconds });
    const admission = makeAdmission(view, claims, metrics, { namingScheme: config.namingScheme });
    const sweep = yield* startReconciler(claims, metrics, config.sweepIntervalMs);
    const server = yield* serveWebhook(admission, view.ready, metrics, {
      hostname: config.hostname,
      port: config.port,
      certFile: config.certFile,
      keyFile: config.keyFile,
      reloadIntervalMs: config.certReloadIntervalMs,
    });
    yield* Effect.logInfo(`danm webhook listening on ${config.hostname}:${server.port}`);
    return { server, metrics, view, claims, admission, sweep };
  });
