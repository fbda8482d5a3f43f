// The two admission endpoints.
//
//   /mutate    danm networks, CREATE and UPDATE: defaults (NetworkType, pools), TenantNetwork automation
//              (profile, VNI claim, NetworkID override). Everything a request could be refused for is checked
//              *before* a VNI is claimed, so a refused request normally never claims anything.
//   /validate  danm networks (CREATE, UPDATE, DELETE), TenantConfigs and MultiNetworkPolicies (CREATE, UPDATE) and
//              pods (CREATE): every rule on the final object, the UPDATE rules that compare with the stored object, delete protection.
//              A TenantNetwork it refuses gets its VNI claim released at once.
//
// Both are safe to call again with their own output (the apiserver may retry or reinvoke): a claim held by the
// object's own nonce is kept. Nothing is written on dry-run (sideEffects: NoneOnDryRun). An UPDATE that leaves
// the spec alone (labels, finalizers, the status subresource) is not re-validated, so objects admitted under
// older rules stay editable.
import { Cause, Effect, Exit, Predicate, Schema, SchemaParser } from "effect";
import {
  DanmGroup,
  type DanmKind,
  decodeDanmObject,
  isNetworkKind,
  type Network,
  type NetworkKind,
  type TenantConfig,
  type TenantNetwork,
} from "../api/danm.ts";
import { problemsOf, renderProblems } from "../api/formats.ts";
import { Pod } from "../api/k8s.ts";
import { MultiNetworkPolicyResource } from "../api/netpol.ts";
import type { NamingScheme } from "../podnetworks/naming.ts";
import { Kube } from "../ports/kube.ts";
import { ReservedIP, reservedIpNetwork, reservedIpResource } from "../api/reservedip.ts";
import type { DirectoryError } from "../podnetworks/selection.ts";
import { checkReservedIp, reservedIpHolders } from "./reservedips.ts";
import { retryTransient } from "./retry.ts";
import { type ClaimKey, type Claims, describeClaim, holderOfNetwork, newNonce, vniOf } from "./claims.ts";
import type { WebhookMetrics } from "./metrics.ts";
import {
  addressingChanged,
  checkNetwork,
  checkNetworkUpdate,
  deviceOf,
  followDefaultPools,
  hostInterfaceConflicts,
  isDynamicType,
  strandingProblems,
  VniClaimAnnotation,
  withDefaults,
} from "./networks.ts";
import { checkPod } from "./pods.ts";
import { makePolicyValidation } from "./policies.ts";
import {
  AdmissionDenied,
  AdmissionFailure,
  causesOf,
  denied,
  failure,
  type ObjectRef,
  type Problem,
  problem,
} from "./problems.ts";
import {
  type AdmissionRequest,
  allow,
  decodeReview,
  deny,
  jsonDiff,
  type JsonPatchOp,
  type ReviewDecodeError,
  type ReviewResponse,
} from "./review.ts";
import type { ClusterView } from "./state.ts";
import { assignTenantNetwork, checkTenantConfig, parsedProfiles, type VniUse } from "./tenantconfig.ts";
import { rangeContains, rangeValues, type VniType } from "./vni.ts";

export interface AdmissionSettings {
  /** `namingScheme` of 00-danm.conf, for pod interface names. */
  readonly namingScheme: NamingScheme;
  /** How long a request may wait for the caches before it is refused. Default 5 s. */
  readonly readyTimeoutMs?: number;
}

export interface Admission {
  readonly mutate: (body: unknown) => Effect.Effect<ReviewResponse, ReviewDecodeError, Kube>;
  readonly validate: (body: unknown) => Effect.Effect<ReviewResponse, ReviewDecodeError, Kube>;
}

interface Verdict {
  readonly patch?: ReadonlyArray<JsonPatchOp>;
  readonly warnings?: ReadonlyArray<string>;
}

type Refusal = AdmissionDenied | AdmissionFailure;

const isRecord = (v: unknown): v is Record<string, unknown> => Predicate.isObject(v) && !Array.isArray(v);

/** Names the object for messages, before anything is decoded. */
function refOf(req: AdmissionRequest): ObjectRef {
  const obj = isRecord(req.object) ? req.object : isRecord(req.oldObject) ? req.oldObject : {};
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const str = (v: unknown) => (Predicate.isString(v) && v !== "" ? v : undefined);
  const generated = str(meta.generateName);
  const name = str(req.name) ?? str(meta.name) ?? (generated ? `${generated}*` : "<unnamed>");
  const namespace = str(req.namespace) ?? str(meta.namespace);
  return { kind: req.kind.kind, name, ...(namespace ? { namespace } : {}) };
}

const decodeStrict = <K extends DanmKind>(kind: K, input: unknown, ref: ObjectRef) =>
  decodeDanmObject(kind, input, "strict").pipe(
    Effect.mapError((e) => denied(ref, e.problems.map((p) => problem(p.path, "strict-decoding", p.message)))),
  );

const decodeStored = <K extends DanmKind>(kind: K, input: unknown, ref: ObjectRef) =>
  decodeDanmObject(kind, input, "lenient").pipe(
    Effect.mapError((e) => failure(ref, `the stored object does not decode: ${e.message}`)),
  );

const nonEmpty = (s: string | undefined): s is string => s !== undefined && s !== "";
const claimAnnotation = (n: Network) => n.metadata.annotations?.[VniClaimAnnotation];

/** Spec and claim annotation equal: nothing the rules look at changed. */
const sameSpec = (a: Network, b: Network) =>
  JSON.stringify(a.spec) === JSON.stringify(b.spec) && claimAnnotation(a) === claimAnnotation(b);

/** On UPDATE, what the webhook assigned and the new object omits is kept (`kubectl replace` of the manifest). */
function carryOver(next: TenantNetwork, old: TenantNetwork): TenantNetwork {
  const o = next.spec.Options ?? {}, p = old.spec.Options ?? {};
  const options = {
    ...o,
    ...(!nonEmpty(o.host_device) && nonEmpty(p.host_device) && !nonEmpty(o.device_pool)
      ? { host_device: p.host_device }
      : {}),
    ...(!nonEmpty(o.device_pool) && nonEmpty(p.device_pool) && !nonEmpty(o.host_device)
      ? { device_pool: p.device_pool }
      : {}),
    ...(o.vlan === undefined && o.vxlan === undefined && p.vlan !== undefined ? { vlan: p.vlan } : {}),
    ...(o.vlan === undefined && o.vxlan === undefined && p.vxlan !== undefined ? { vxlan: p.vxlan } : {}),
  };
  const spec = {
    ...next.spec,
    ...(!nonEmpty(next.spec.NetworkID) && nonEmpty(old.spec.NetworkID) ? { NetworkID: old.spec.NetworkID } : {}),
    ...(!nonEmpty(next.spec.NetworkType) && nonEmpty(old.spec.NetworkType)
      ? { NetworkType: old.spec.NetworkType }
      : {}),
    ...(Object.keys(options).length > 0 ? { Options: options } : {}),
  };
  const nonce = claimAnnotation(old);
  const metadata = nonce !== undefined && claimAnnotation(next) === undefined
    ? { ...next.metadata, annotations: { ...next.metadata.annotations, [VniClaimAnnotation]: nonce } }
    : next.metadata;
  return { ...next, metadata, spec };
}

/** A claim annotation the user sent is not ours to keep (the webhook writes its own). */
function withoutClaimAnnotation<N extends Network>(n: N): N {
  if (claimAnnotation(n) === undefined) return n;
  const { [VniClaimAnnotation]: _drop, ...rest } = n.metadata.annotations ?? {};
  const { annotations: _all, ...metadata } = n.metadata;
  return { ...n, metadata: Object.keys(rest).length > 0 ? { ...metadata, annotations: rest } : metadata };
}

function withVni(n: TenantNetwork, type: VniType, id: number, nonce?: string): TenantNetwork {
  const metadata = nonce === undefined
    ? n.metadata
    : { ...n.metadata, annotations: { ...n.metadata.annotations, [VniClaimAnnotation]: nonce } };
  return { ...n, metadata, spec: { ...n.spec, Options: { ...n.spec.Options, [type]: id } } };
}

/** What the admission handlers share: the caches and the VNI claims, and views over them. */
function admissionContext(view: ClusterView, claims: Claims, metrics: WebhookMetrics, settings: AdmissionSettings) {
  const fromView = <A, E extends { readonly message: string }, R>(ref: ObjectRef, e: Effect.Effect<A, E, R>) =>
    Effect.mapError(e, (err) => failure(ref, err.message));

  /** Networks in the caches that still count (not being deleted through this process). */
  const liveNetworks = Effect.map(view.networks, (all) => all.filter((n) => !view.isDeleting(n.object.metadata.uid)));

  const vniUsage = (device: string, type: VniType) =>
    Effect.map(liveNetworks, (all) => {
      const used = new Set<number>();
      for (const { object } of all) {
        if (deviceOf(object) !== device) continue;
        const id = object.spec.Options?.[type];
        if (id !== undefined) used.add(id);
      }
      return used;
    });

  const profileLoad = Effect.map(liveNetworks, (all) => {
    const counts = new Map<string, number>();
    for (const { kind, object } of all) {
      if (kind !== "TenantNetwork") continue;
      const device = deviceOf(object);
      if (device === undefined) continue;
      const o = object.spec.Options ?? {};
      const key = `${device}\u0000${o.vlan !== undefined ? "vlan" : o.vxlan !== undefined ? "vxlan" : ""}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return (device: string, vniType: string) => counts.get(`${device}\u0000${vniType}`) ?? 0;
  });

  return { view, claims, metrics, settings, fromView, liveNetworks, vniUsage, profileLoad };
}

type AdmissionContext = ReturnType<typeof admissionContext>;

/** /mutate of the network kinds: defaults, carried-over fields, and a TenantNetwork's automatic device and VNI. */
function networkMutation({ view, claims, metrics, fromView, vniUsage, profileLoad }: AdmissionContext) {
  // ---- TenantNetwork automation -----------------------------------------------------------------------------------

  const assignTenant = (req: AdmissionRequest, original: TenantNetwork, defaulted: TenantNetwork, ref: ObjectRef) =>
    Effect.gen(function* () {
      const dryRun = req.dryRun === true;
      const metaName = typeof req.name === "string" && req.name !== "" ? req.name : original.metadata.name ?? "";
      const namespace = ref.namespace ?? original.metadata.namespace ?? "";
      const holderIn = holderOfNetwork(original, { namespace, name: metaName });
      const keyIn = vniOf(original);
      // Our own output coming back (retry or reinvocation): the claim it names is held for exactly this network.
      if (holderIn !== undefined && keyIn !== undefined && !dryRun) {
        if (yield* fromView(ref, claims.heldBy(keyIn, holderIn, true))) {
          const problems = checkNetwork(defaulted, { kind: "TenantNetwork", operation: "CREATE", userInput: false });
          if (problems.length > 0) return yield* denied(ref, problems);
          return defaulted;
        }
      }
      const userProblems = checkNetwork(original, { kind: "TenantNetwork", operation: "CREATE", userInput: true })
        .filter((p) => p.rule === "tenant-no-vni");
      const tc = yield* fromView(ref, view.tenantConfig);
      const load = yield* profileLoad;
      const assigned = assignTenantNetwork(withoutClaimAnnotation(defaulted), tc, load);
      if ("problems" in assigned) return yield* denied(ref, [...userProblems, ...assigned.problems]);
      const { network, vni } = assigned.assignment;
      // Check the would-be result (with some VNI of the range standing in) before claiming anything.
      const standIn = vni ? withVni(network, vni.type, vni.range[0].start) : network;
      const problems = [
        ...userProblems,
        ...checkNetwork(standIn, { kind: "TenantNetwork", operation: "CREATE", userInput: false }),
      ];
      if (problems.length > 0) return yield* denied(ref, problems);
      if (vni === undefined) return network;
      const used = yield* vniUsage(vni.device, vni.type);
      const exhausted = () =>
        denied(ref, [
          problem(
            `spec.Options.${vni.type}`,
            "vni-exhausted",
            `no free ${vni.type} left in ${assigned.assignment.profile} of TenantConfig ${tc?.metadata.name ?? ""}`,
          ),
        ]);
      if (dryRun) {
        // Show what would be assigned; claim nothing.
        for (const id of rangeValues(vni.range)) if (!used.has(id)) return withVni(network, vni.type, id);
        return yield* exhausted();
      }
      const nonce = newNonce();
      const id = yield* fromView(
        ref,
        claims.claimLowest({
          device: vni.device,
          type: vni.type,
          range: vni.range,
          inUse: (id) => used.has(id),
          holder: { namespace, name: metaName, nonce },
        }),
      );
      if (id === undefined) {
        metrics.claims.inc({ result: "exhausted" });
        return yield* exhausted();
      }
      metrics.claims.inc({ result: "claimed" });
      return withVni(network, vni.type, id, nonce);
    });

  const mutateNetwork = (req: AdmissionRequest, kind: NetworkKind, ref: ObjectRef) =>
    Effect.gen(function* () {
      if (req.operation !== "CREATE" && req.operation !== "UPDATE") return {};
      const original: Network = yield* decodeStrict(kind, req.object, ref);
      let net: Network = original;
      let old: Network | undefined;
      if (req.operation === "UPDATE") {
        old = yield* decodeStored(kind, req.oldObject, ref);
        if (sameSpec(old, original)) return {};
        if (kind === "TenantNetwork") net = carryOver(net as TenantNetwork, old as TenantNetwork);
        net = withDefaults(followDefaultPools(net, old));
      } else {
        net = withDefaults(net);
      }
      if (kind === "TenantNetwork" && req.operation === "CREATE") {
        net = yield* assignTenant(req, original as TenantNetwork, net as TenantNetwork, ref);
      } else {
        const problems = checkNetwork(net, {
          kind,
          operation: req.operation,
          userInput: false,
          ...(old ? { old } : {}),
        });
        if (problems.length > 0) return yield* denied(ref, problems);
      }
      return { patch: jsonDiff(original, net) } satisfies Verdict;
    });

  return { mutateNetwork };
}

/** /validate of the network kinds: their rules, VNI claims, and deletes of networks still in use. */
function networkValidation({ view, claims, metrics, fromView, liveNetworks }: AdmissionContext) {
  const releaseRefused = (req: AdmissionRequest, net: Network) =>
    Effect.gen(function* () {
      const holder = holderOfNetwork(net as TenantNetwork, { namespace: req.namespace ?? "", name: req.name ?? "" });
      const key = vniOf(net as TenantNetwork);
      if (req.dryRun === true || holder === undefined || key === undefined) return;
      const released = yield* claims.release(key, holder).pipe(
        Effect.catch((e) => Effect.as(Effect.logWarning(`could not release ${e.message}; the sweep will`), false)),
      );
      if (released) metrics.claims.inc({ result: "released" });
    });

  const validateDelete = (req: AdmissionRequest, kind: NetworkKind, ref: ObjectRef) =>
    Effect.gen(function* () {
      const pods = yield* view.attachedPods(kind, req.namespace || undefined, req.name ?? ref.name);
      if (pods.length > 0) {
        const more = pods.length > 1 ? `, and ${pods.length - 1} more` : "";
        return yield* denied(ref, [
          problem("", "delete-while-attached", `cannot be deleted while pods are attached (pod ${pods[0]}${more})`),
        ]);
      }
      if (kind !== "TenantNetwork" || req.dryRun === true) return {};
      const old = yield* Effect.option(decodeDanmObject("TenantNetwork", req.oldObject, "lenient"));
      if (old._tag === "None") return {};
      const holder = holderOfNetwork(old.value), key = vniOf(old.value);
      if (old.value.metadata.uid !== undefined && holder !== undefined) view.markDeleting(old.value.metadata.uid);
      if (holder !== undefined && key !== undefined) {
        // Never blocks the delete: an unmarked claim is reclaimed by the reconciler or the sweep anyway.
        yield* claims.markReleased(key, holder).pipe(Effect.catch((e) => Effect.logWarning(e.message)));
      }
      return {};
    });

  const tenantVniCheck = (req: AdmissionRequest, net: TenantNetwork, tc: TenantConfig | undefined) =>
    Effect.gen(function* () {
      const out: Problem[] = [];
      const type = nonEmpty(net.spec.NetworkType) ? net.spec.NetworkType : "";
      if (isDynamicType(type)) {
        const assigned = assignTenantNetwork(net, tc, () => 0);
        if ("problems" in assigned) out.push(...assigned.problems);
      }
      const key: ClaimKey | undefined = vniOf(net);
      if (key === undefined || req.dryRun === true) return out;
      const holder = holderOfNetwork(net, { namespace: req.namespace ?? "", name: req.name ?? "" });
      const held = holder !== undefined && (yield* claims.heldBy(key, holder));
      if (!held) {
        out.push(
          problem(
            `spec.Options.${key.type}`,
            "tenant-no-vni",
            `${describeClaim(key)} was not assigned by the webhook: tenants cannot choose it`,
          ),
        );
      }
      return out;
    });

  const validateNetwork = (req: AdmissionRequest, kind: NetworkKind, ref: ObjectRef) =>
    Effect.gen(function* () {
      if (req.operation === "DELETE") return yield* validateDelete(req, kind, ref);
      if (req.operation !== "CREATE" && req.operation !== "UPDATE") return {};
      const net: Network = yield* decodeStrict(kind, req.object, ref);
      const old: Network | undefined = req.operation === "UPDATE"
        ? yield* decodeStored(kind, req.oldObject, ref)
        : undefined;
      if (old !== undefined && sameSpec(old, net)) return {};
      const problems: Problem[] = checkNetwork(net, {
        kind,
        operation: req.operation,
        userInput: false,
        ...(old ? { old } : {}),
      });
      if (kind === "TenantNetwork" && req.operation === "CREATE") {
        const tc = yield* fromView(ref, view.tenantConfig);
        problems.push(...(yield* fromView(ref, tenantVniCheck(req, net as TenantNetwork, tc))));
      }
      problems.push(...hostInterfaceConflicts(net, kind, yield* liveNetworks, old));
      if (old !== undefined) {
        const pods = yield* view.attachedPods(kind, net.metadata.namespace ?? req.namespace, net.metadata.name ?? "");
        problems.push(...checkNetworkUpdate(old, net, { kind, ...(pods.length > 0 ? { attachedPod: pods[0] } : {}) }));
        if (addressingChanged(old, net) && old.metadata.uid !== undefined) {
          const blocks = yield* fromView(ref, view.ipBlocks(old.metadata.uid));
          problems.push(...strandingProblems(net, blocks));
        }
      }
      if (problems.length > 0) {
        if (kind === "TenantNetwork" && req.operation === "CREATE") yield* releaseRefused(req, net);
        return yield* denied(ref, problems);
      }
      return {};
    });

  return { validateNetwork };
}

/** /validate of TenantConfigs, ReservedIPs and Pods. */
function objectValidation({ view, settings, fromView, liveNetworks }: AdmissionContext) {
  const validateTenantConfig = (req: AdmissionRequest, ref: ObjectRef) =>
    Effect.gen(function* () {
      if (req.operation !== "CREATE" && req.operation !== "UPDATE") return {};
      const tc = yield* decodeStrict("TenantConfig", req.object, ref);
      let old: TenantConfig | undefined;
      const inUse: VniUse[] = [];
      if (req.operation === "UPDATE") {
        old = yield* decodeStored("TenantConfig", req.oldObject, ref);
        // Labels, annotations, finalizers: nothing the rules read changed (keeps DANM-era configs editable).
        const content = (t: TenantConfig) =>
          JSON.stringify([t.hostDevices ?? [], t.networkIds ?? {}, t.allowedClusterNetworks ?? []]);
        if (content(old) === content(tc)) return {};
        const active = yield* fromView(ref, view.tenantConfig);
        if (active?.metadata.name === tc.metadata.name) {
          const oldProfiles = parsedProfiles(old);
          for (const { kind, object } of yield* liveNetworks) {
            if (kind !== "TenantNetwork") continue;
            const key = vniOf(object as TenantNetwork);
            if (!key) continue;
            const covered = oldProfiles.some((p) =>
              p.profile.name === key.device && p.type === key.type && p.range && rangeContains(p.range, key.id)
            );
            if (covered) {
              inUse.push({
                ...key,
                user: `TenantNetwork ${object.metadata.namespace ?? ""}/${object.metadata.name ?? ""}`,
              });
            }
          }
        }
      }
      const problems = checkTenantConfig(tc, { operation: req.operation, inUse, ...(old ? { old } : {}) });
      if (problems.length > 0) return yield* denied(ref, problems);
      return {};
    });

  const validateReservedIp = (req: AdmissionRequest, ref: ObjectRef) =>
    Effect.gen(function* () {
      const decode = (input: unknown) =>
        SchemaParser.decodeUnknownEffect(ReservedIP)(input, { errors: "all" }).pipe(
          Effect.mapError((issue) => denied(ref, problemsOf(issue).map((p) => problem(p.path, "schema", p.message)))),
        );
      const kube = yield* Kube;
      const networkOf = (r: ReservedIP) => {
        const n = reservedIpNetwork(r);
        const lookup: Effect.Effect<Network | undefined, DirectoryError> = n.kind === "DanmNet"
          ? view.directory.danmNet(n.namespace ?? "", n.name)
          : n.kind === "TenantNetwork"
          ? view.directory.tenantNetwork(n.namespace ?? "", n.name)
          : view.directory.clusterNetwork(n.name);
        return fromView(ref, lookup);
      };
      if (req.operation === "DELETE") {
        const r = yield* decode(req.oldObject);
        const network = yield* networkOf(r);
        if (network === undefined) return {};
        const holders = yield* fromView(ref, reservedIpHolders(r, network, view.ipBlocks));
        if (holders.length === 0) return {};
        return yield* denied(ref, holders.map((h) => problem("spec.ips", "reservedip-in-use", h)));
      }
      if (req.operation !== "CREATE" && req.operation !== "UPDATE") return {};
      const r = yield* decode(req.object);
      const target = reservedIpNetwork(r);
      const all = yield* fromView(ref, retryTransient(kube.list(reservedIpResource)));
      const others = all.items.filter((o) => {
        const n = reservedIpNetwork(o);
        const self = o.metadata.namespace === r.metadata.namespace && o.metadata.name === r.metadata.name;
        return !self && n.kind === target.kind && n.name === target.name && n.namespace === target.namespace;
      });
      const problems = checkReservedIp(r, {
        network: yield* networkOf(r),
        tenantConfig: yield* fromView(ref, view.tenantConfig),
        others,
      });
      if (problems.length > 0) return yield* denied(ref, problems);
      return {};
    });

  const validatePod = (req: AdmissionRequest, ref: ObjectRef) =>
    Effect.gen(function* () {
      if (req.operation !== "CREATE") return {};
      const pod = yield* SchemaParser.decodeUnknownEffect(Pod)(req.object).pipe(
        Effect.mapError((issue) => failure(ref, `not a Pod: ${renderProblems(problemsOf(issue))}`)),
      );
      if (pod.spec.hostNetwork === true) return {};
      const namespace = req.namespace ?? pod.metadata.namespace ?? "default";
      const name = req.name || pod.metadata.name || "";
      const verdict = yield* fromView(ref, checkPod(pod, namespace, name, settings.namingScheme, view));
      if (verdict.problems.length > 0) return yield* denied(ref, verdict.problems);
      return { warnings: verdict.warnings } satisfies Verdict;
    });

  return { validateTenantConfig, validateReservedIp, validatePod };
}

/** The review plumbing: decode, wait for the caches, run `handler`, answer, count. */
function reviews(view: ClusterView, metrics: WebhookMetrics, settings: AdmissionSettings) {
  const run = (
    endpoint: "mutate" | "validate",
    body: unknown,
    handler: (req: AdmissionRequest, ref: ObjectRef) => Effect.Effect<Verdict, Refusal, Kube>,
  ): Effect.Effect<ReviewResponse, ReviewDecodeError, Kube> =>
    Effect.gen(function* () {
      const started = performance.now();
      const review = yield* decodeReview(body);
      const req = review.request;
      const ref = refOf(req);
      const ready: Effect.Effect<void, AdmissionFailure> = view.awaitReady.pipe(
        Effect.mapError((e) => failure(ref, e.message)),
        Effect.timeoutOrElse({
          duration: settings.readyTimeoutMs ?? 5000,
          orElse: () => Effect.fail(failure(ref, "the webhook's caches are not synced yet")),
        }),
      );
      // The status subresource and kinds we do not own are not ours to judge.
      const skip = req.subResource !== undefined && req.subResource !== "";
      const exit = yield* Effect.exit(skip ? Effect.succeed({} as Verdict) : Effect.andThen(ready, handler(req, ref)));
      let response: ReviewResponse;
      let result: "allowed" | "denied" | "error";
      let rules: ReadonlyArray<string> = [];
      if (Exit.isSuccess(exit)) {
        response = allow(req.uid, exit.value.patch, exit.value.warnings);
        result = "allowed";
      } else {
        const err = Cause.findErrorOption(exit.cause);
        if (err._tag === "Some" && err.value instanceof AdmissionDenied) {
          response = deny(req.uid, err.value.message, causesOf(err.value.problems));
          result = "denied";
          rules = err.value.problems.map((p) => p.rule);
        } else if (err._tag === "Some") {
          yield* Effect.logWarning(err.value.message);
          response = deny(req.uid, err.value.message, [], 500);
          result = "error";
        } else {
          const detail = Cause.pretty(exit.cause);
          yield* Effect.logError(`admission of ${ref.kind} ${ref.name} died: ${detail}`);
          response = deny(req.uid, failure(ref, "internal error").message, [], 500);
          result = "error";
        }
      }
      metrics.observeAdmission(
        endpoint,
        req.kind.kind,
        req.operation,
        result,
        (performance.now() - started) / 1000,
        rules,
      );
      return response;
    });

  return run;
}

export const makeAdmission = (
  view: ClusterView,
  claims: Claims,
  metrics: WebhookMetrics,
  settings: AdmissionSettings,
): Admission => {
  const context = admissionContext(view, claims, metrics, settings);
  const { mutateNetwork } = networkMutation(context);
  const { validateNetwork } = networkValidation(context);
  const { validateTenantConfig, validateReservedIp, validatePod } = objectValidation(context);
  const validatePolicy = makePolicyValidation(view.directory);
  const run = reviews(view, metrics, settings);
  const isDanmGroup = (g: string) => g === "danm.io" || g === "danm.k8s.io";

  return {
    mutate: (body) =>
      run("mutate", body, (req, ref) => {
        const kind = req.kind.kind;
        if (isDanmGroup(req.kind.group) && isNetworkKind(kind)) return mutateNetwork(req, kind, ref);
        return Effect.succeed({});
      }),
    validate: (body) =>
      run("validate", body, (req, ref) => {
        const kind = req.kind.kind;
        if (isDanmGroup(req.kind.group) && isNetworkKind(kind)) return validateNetwork(req, kind, ref);
        if (isDanmGroup(req.kind.group) && kind === "TenantConfig") return validateTenantConfig(req, ref);
        if (req.kind.group === DanmGroup && kind === "ReservedIP") return validateReservedIp(req, ref);
        if (req.kind.group === "" && kind === "Pod") return validatePod(req, ref);
        if (req.kind.group === MultiNetworkPolicyResource.group && kind === MultiNetworkPolicyResource.kind) {
          return validatePolicy(req, ref);
        }
        return Effect.succeed({});
      }),
  };
};

/** Errors the endpoints themselves can produce (an unreadable body); answered with HTTP 400. */
export const isReviewDecodeError = (e: unknown): e is ReviewDecodeError =>
  Schema.is(Schema.Struct({ _tag: Schema.Literal("ReviewDecodeError") }))(e);
