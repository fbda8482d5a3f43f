// Builds AdmissionReviews and runs the admission endpoints against the in-memory apiserver, for the unit tier.
import { Effect, Layer, type Scope } from "effect";
import {
  type AdmissionDecision,
  type AdmissionRequest,
  layerMemoryKube,
  MemoryApiServer,
} from "../../../adapters/kube/memory.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { type Admission, makeAdmission } from "../../../core/webhook/admit.ts";
import { type Claims, makeClaims } from "../../../core/webhook/claims.ts";
import { WebhookMetrics } from "../../../core/webhook/metrics.ts";
import type { JsonPatchOp, ReviewResponse } from "../../../core/webhook/review.ts";
import { startReconciler } from "../../../core/webhook/main.ts";
import { type ClusterView, makeClusterView } from "../../../core/webhook/state.ts";
import { fail } from "../../harness/assert.ts";

export type Json = Record<string, unknown>;

export const ClaimNamespace = "danm-system";

let uid = 0;

export interface ReviewOptions {
  readonly dryRun?: boolean;
  readonly oldObject?: Json;
  readonly group?: string;
  readonly name?: string;
}

/** An AdmissionReview as the apiserver sends it. */
export function review(operation: "CREATE" | "UPDATE" | "DELETE", object: Json | undefined, o: ReviewOptions = {}) {
  const subject = (object ?? o.oldObject ?? {}) as Json;
  const meta = (subject.metadata ?? {}) as Json;
  const kind = String(subject.kind ?? "DanmNet");
  const group = o.group ?? (kind === "Pod" ? "" : "danm.io");
  const plural = kind === "Pod" ? "pods" : `${kind.toLowerCase()}s`;
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: `req-${++uid}`,
      kind: { group, version: "v1", kind },
      resource: { group, version: "v1", resource: plural },
      ...(o.name ?? meta.name ? { name: o.name ?? meta.name } : {}),
      ...(meta.namespace ? { namespace: meta.namespace } : {}),
      operation,
      userInfo: { username: "tester" },
      object: object ?? null,
      oldObject: o.oldObject ?? null,
      dryRun: o.dryRun ?? false,
    },
  };
}

/** Applies the response's JSON patch (add/replace/remove only: all the webhook emits) to `object`. */
export function patched(object: Json, response: ReviewResponse): Json {
  const out = structuredClone(object);
  if (!response.response.patch) return out;
  const ops = JSON.parse(atob(response.response.patch)) as JsonPatchOp[];
  for (const op of ops) {
    const path = op.path.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    let cur: Json = out;
    for (const k of path.slice(0, -1)) cur = cur[k] as Json;
    const last = path[path.length - 1];
    if (op.op === "remove") delete cur[last];
    else cur[last] = structuredClone(op.value);
  }
  return out;
}

export const message = (r: ReviewResponse) => r.response.status?.message ?? "";

export function expectAllowed(r: ReviewResponse, what = "request"): void {
  if (!r.response.allowed) fail(`${what} was refused: ${message(r)}`);
}

export function expectDenied(r: ReviewResponse, re: RegExp, what = "request"): void {
  if (r.response.allowed) fail(`${what} was allowed, expected a refusal matching ${re}`);
  if (!re.test(message(r))) fail(`${what}: message ${JSON.stringify(message(r))} does not match ${re}`);
}

export interface Env {
  readonly server: MemoryApiServer;
  readonly kube: Kube["Service"];
  readonly view: ClusterView;
  readonly claims: Claims;
  readonly admission: Admission;
  readonly metrics: WebhookMetrics;
  /** One sweep of the claim reconciler (which also runs its release-on-delete watch). */
  readonly sweep: Effect.Effect<ReadonlyArray<string>>;
  readonly mutate: (body: unknown) => Effect.Effect<ReviewResponse>;
  readonly validate: (body: unknown) => Effect.Effect<ReviewResponse>;
  /** mutate, then validate the patched object; returns the final object (or the first refusal). */
  readonly admit: (
    operation: "CREATE" | "UPDATE",
    object: Json,
    o?: ReviewOptions,
  ) => Effect.Effect<{ response: ReviewResponse; object: Json }>;
}

export interface EnvOptions {
  readonly graceSeconds?: number;
  readonly tenantConfigName?: string;
  readonly namingScheme?: "" | "legacy";
}

/** One webhook "replica" on a (possibly shared) memory apiserver. */
export const makeEnv = (
  server: MemoryApiServer,
  o: EnvOptions = {},
): Effect.Effect<Env, never, Scope.Scope | Kube> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const view = yield* makeClusterView(o.tenantConfigName ? { tenantConfigName: o.tenantConfigName } : {});
    yield* Effect.orDie(view.awaitReady);
    const claims = yield* makeClaims({ namespace: ClaimNamespace, graceSeconds: o.graceSeconds ?? 120 });
    const metrics = new WebhookMetrics();
    const admission = makeAdmission(view, claims, metrics, { namingScheme: o.namingScheme ?? "" });
    const sweep = yield* startReconciler(claims, metrics, 3_600_000);
    const provide = <A, E>(e: Effect.Effect<A, E, Kube>) => Effect.orDie(Effect.provideService(e, Kube, kube));
    const mutate = (b: unknown) => provide(admission.mutate(b));
    const validate = (b: unknown) => provide(admission.validate(b));
    const admit: Env["admit"] = (operation, object, ro = {}) =>
      Effect.gen(function* () {
        const m = yield* mutate(review(operation, object, ro));
        if (!m.response.allowed) return { response: m, object };
        const final = patched(object, m);
        const v = yield* validate(review(operation, final, ro));
        return { response: v, object: final };
      });
    return { server, kube, view, claims, admission, metrics, sweep, mutate, validate, admit };
  });

/** Runs `body` with one webhook on a fresh memory apiserver. */
export function withEnv<A>(
  body: (env: Env) => Effect.Effect<A, unknown, Kube | Scope.Scope>,
  o: EnvOptions = {},
): Promise<A> {
  const server = new MemoryApiServer();
  return Effect.runPromise(
    Effect.scoped(Effect.flatMap(makeEnv(server, o), body)).pipe(
      Effect.provide(layerMemoryKube(server) as Layer.Layer<Kube>),
    ) as Effect.Effect<A, unknown, never>,
  );
}

/** The review the apiserver would send for a memory-apiserver admission request. */
function reviewOf(r: AdmissionRequest) {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: `mem-${++uid}`,
      kind: { group: r.resource.group, version: r.resource.version, kind: r.resource.kind },
      resource: { group: r.resource.group, version: r.resource.version, resource: r.resource.plural },
      ...(r.subresource ? { subResource: r.subresource } : {}),
      ...(r.name ? { name: r.name } : {}),
      ...(r.namespace ? { namespace: r.namespace } : {}),
      operation: r.operation,
      userInfo: { username: "tester" },
      object: r.object ?? null,
      oldObject: r.oldObject ?? null,
      dryRun: r.dryRun,
    },
  };
}

const decision = (r: ReviewResponse, object?: Json): AdmissionDecision =>
  r.response.allowed
    ? { allowed: true, ...(object && r.response.patch ? { object: patched(object, r) } : {}) }
    : { allowed: false, message: message(r), code: r.response.status?.code ?? 403 };

/** Registers the env's endpoints with the memory apiserver, as the webhook configurations do with a real one. */
export function registerWebhook(env: Env): () => void {
  const off = [
    env.server.addAdmissionHook({
      name: "networks.mutate.danm.io",
      phase: "mutating",
      admit: (r) => Effect.map(env.mutate(reviewOf(r)), (res) => decision(res, r.object as Json | undefined)),
    }),
    env.server.addAdmissionHook({
      name: "validate.danm.io",
      phase: "validating",
      admit: (r) => Effect.map(env.validate(reviewOf(r)), (res) => decision(res)),
    }),
  ];
  return () => off.forEach((f) => f());
}
