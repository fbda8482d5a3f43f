// The danm webhook plugged into the in-memory apiserver, with the registrations of k8s/webhook/webhooks.yaml:
// networks are mutated (CREATE/UPDATE) and validated (CREATE/UPDATE/DELETE), ReservedIPs validated (CREATE/UPDATE/
// DELETE), TenantConfigs and MultiNetworkPolicies validated (CREATE/UPDATE), pods carrying danm or NPWG annotations
// validated on CREATE. Requests travel as real AdmissionReview documents
// through the same handlers the HTTPS server uses; the warnings of admitted requests go to the caller's sink.
import { Effect } from "effect";
import { InterfacesAnnotation, LegacyInterfacesAnnotation, NetworksAnnotation } from "../../core/api/annotations.ts";
import { MultiNetworkPolicyResource } from "../../core/api/netpol.ts";
import type { Admission } from "../../core/webhook/admit.ts";
import { Kube } from "../../core/ports/kube.ts";
import type { AdmissionDecision, AdmissionHook, AdmissionRequest } from "../kube/memory.ts";
import type { SimAdmissionWarning } from "../../core/sim/report.ts";
import type { ScenarioObject } from "../../core/sim/scenario.ts";
import { isJsonObject, type JsonObject, jsonPatch } from "../kube/patch.ts";

const networkPlurals = new Set(["danmnets", "tenantnetworks", "clusternetworks"]);

const selectsNetworks = (o: JsonObject | undefined) => {
  const meta = isJsonObject(o?.metadata) ? o.metadata : {};
  const ann = isJsonObject(meta.annotations) ? meta.annotations : {};
  const spec = isJsonObject(o?.spec) ? o.spec : {};
  return [InterfacesAnnotation, LegacyInterfacesAnnotation, NetworksAnnotation].some((k) => k in ann) &&
    spec.hostNetwork !== true;
};

function review(req: AdmissionRequest): Record<string, unknown> {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: crypto.randomUUID(),
      kind: { group: req.resource.group, version: req.resource.version, kind: req.resource.kind },
      resource: { group: req.resource.group, version: req.resource.version, resource: req.resource.plural },
      ...(req.name ? { name: req.name } : {}),
      ...(req.namespace ? { namespace: req.namespace } : {}),
      operation: req.operation,
      userInfo: { username: "danm-sim" },
      object: req.object ?? null,
      oldObject: req.oldObject ?? null,
      dryRun: req.dryRun,
    },
  };
}

type Handler = (body: unknown) => ReturnType<Admission["mutate"]>;

/** Receives the warnings of an admitted request (what kubectl would print as "Warning:"). */
export type AdmissionWarnings = (req: AdmissionRequest, warnings: ReadonlyArray<string>) => void;

const decide = (
  handler: Handler,
  req: AdmissionRequest,
  kube: Kube["Service"],
  mutating: boolean,
  warned: AdmissionWarnings,
) =>
  Effect.gen(function* () {
    const answer = yield* Effect.result(handler(review(req)).pipe(Effect.provideService(Kube, kube)));
    if (answer._tag === "Failure") {
      const d: AdmissionDecision = { allowed: false, message: answer.failure.message, code: 400 };
      return d;
    }
    const r = answer.success.response;
    if (!r.allowed) {
      const d: AdmissionDecision = {
        allowed: false,
        message: r.status?.message ?? "denied by the danm webhook",
        code: r.status?.code ?? 403,
        ...(r.status?.reason ? { reason: r.status.reason } : {}),
      };
      return d;
    }
    if (r.warnings && r.warnings.length > 0 && !req.dryRun) warned(req, r.warnings);
    if (mutating && r.patch && req.object) {
      const ops = JSON.parse(atob(r.patch));
      const patched = jsonPatch(req.object, ops);
      const d: AdmissionDecision = { allowed: true, ...(isJsonObject(patched) ? { object: patched } : {}) };
      return d;
    }
    const d: AdmissionDecision = { allowed: true };
    return d;
  });

/** An admitted object's warnings, by what admission said the object was. */
export interface WarnedObject {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  readonly warnings: ReadonlyArray<string>;
}

/** The report's admission warnings: one per warning, with the scenario file of the object when it has one. */
export function reportWarnings(
  objects: ReadonlyArray<ScenarioObject>,
  warned: ReadonlyArray<WarnedObject>,
): SimAdmissionWarning[] {
  return warned.flatMap((w) => {
    const o = objects.find((o) =>
      o.kind === w.kind && o.name === w.name &&
      (w.namespace === undefined || (o.namespace ?? "default") === w.namespace)
    );
    return w.warnings.map((warning) => ({
      kind: w.kind,
      ...(w.namespace ? { namespace: w.namespace } : {}),
      name: w.name,
      warning,
      source: o?.source.file ?? "",
    }));
  });
}

/** Admission hooks for MemoryApiServer that run `admission` exactly where the apiserver would call it. */
export function webhookHooks(
  admission: Admission,
  kube: Kube["Service"],
  warned: AdmissionWarnings = () => {},
): AdmissionHook[] {
  const isDanm = (req: AdmissionRequest) => req.resource.group === "danm.io" && req.subresource === undefined;
  return [
    {
      name: "networks.mutate.danm.io",
      phase: "mutating",
      matches: (req) =>
        isDanm(req) && networkPlurals.has(req.resource.plural) &&
        (req.operation === "CREATE" || req.operation === "UPDATE"),
      admit: (req) => decide(admission.mutate, req, kube, true, warned),
    },
    {
      name: "danm.validate.danm.io",
      phase: "validating",
      matches: (req) =>
        isDanm(req) &&
        ((networkPlurals.has(req.resource.plural)) || req.resource.plural === "reservedips" ||
          (req.resource.plural === "tenantconfigs" && req.operation !== "DELETE")),
      admit: (req) => decide(admission.validate, req, kube, false, warned),
    },
    {
      name: "multinetworkpolicies.validate.danm.io",
      phase: "validating",
      matches: (req) =>
        req.resource.group === MultiNetworkPolicyResource.group &&
        req.resource.plural === MultiNetworkPolicyResource.plural && req.subresource === undefined &&
        (req.operation === "CREATE" || req.operation === "UPDATE"),
      admit: (req) => decide(admission.validate, req, kube, false, warned),
    },
    {
      name: "pods.validate.danm.io",
      phase: "validating",
      matches: (req) =>
        req.resource.group === "" && req.resource.plural === "pods" && req.operation === "CREATE" &&
        req.subresource === undefined && req.namespace !== "kube-system" && selectsNetworks(req.object),
      admit: (req) => decide(admission.validate, req, kube, false, warned),
    },
  ];
}
