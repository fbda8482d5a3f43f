// /validate of MultiNetworkPolicies (CREATE, UPDATE): core/netpol/validate.ts's rules refuse the policy, naming the
// field; its warnings, and networks the policy-for annotation names that do not exist (yet), come back as
// AdmissionReview warnings — a policy may well be created before its network, and then polices it once it exists.
import { Effect, SchemaParser } from "effect";
import { problemsOf } from "../api/formats.ts";
import { MultiNetworkPolicy, PolicyForAnnotation, type PolicyNetworkRef } from "../api/netpol.ts";
import {
  policyForField,
  policyNetworkRefs,
  type PolicyProblem,
  renderPolicyProblem,
  validatePolicy,
} from "../netpol/validate.ts";
import type { DirectoryError, NetworkDirectoryService } from "../podnetworks/selection.ts";
import { denied, type ObjectRef, problem } from "./problems.ts";
import type { AdmissionRequest } from "./review.ts";

/** Whether the network a policy-for entry names exists; a plain name may be a NAD or a DanmNet. */
function networkExists(
  directory: NetworkDirectoryService,
  ref: PolicyNetworkRef,
  namespace: string,
): Effect.Effect<boolean, DirectoryError> {
  const found = <A>(e: Effect.Effect<A | undefined, DirectoryError>) => Effect.map(e, (a) => a !== undefined);
  switch (ref.kind) {
    case "ClusterNetwork":
      return found(directory.clusterNetwork(ref.name));
    case "TenantNetwork":
      return found(directory.tenantNetwork(namespace, ref.name));
    case "DanmNet":
      return found(directory.danmNet(namespace, ref.name));
    case undefined:
      return Effect.zipWith(
        found(directory.danmNet(namespace, ref.name)),
        found(directory.attachmentDefinition(namespace, ref.name)),
        (a, b) => a || b,
      );
  }
}

const describeRef = (ref: PolicyNetworkRef, namespace: string) =>
  ref.kind === "ClusterNetwork"
    ? `ClusterNetwork ${ref.name}`
    : `${ref.kind ?? "NetworkAttachmentDefinition or DanmNet"} ${namespace}/${ref.name}`;

/** Warnings for the named networks that do not exist; a lookup that fails is a warning too, never a refusal. */
const missingNetworks = (directory: NetworkDirectoryService, policy: MultiNetworkPolicy, namespace: string) =>
  Effect.forEach(policyNetworkRefs(policy).entries(), ([i, ref]) => {
    const ns = ref.namespace ?? namespace;
    const where = `${policyForField} entry ${i}`;
    return networkExists(directory, ref, ns).pipe(
      Effect.map((exists): ReadonlyArray<PolicyProblem> =>
        exists ? [] : [{
          field: where,
          rule: "network-missing",
          message: `${describeRef(ref, ns)} does not exist (yet): the policy applies to it once it does`,
        }]
      ),
      Effect.catch((e) =>
        Effect.succeed([{ field: where, rule: "network-unchecked", message: `could not be checked: ${e.message}` }])
      ),
    );
  }).pipe(Effect.map((lists) => lists.flat()));

/** What the rules read: the spec and the policy-for annotation (labels and other annotations may always change). */
const content = (p: MultiNetworkPolicy) =>
  JSON.stringify([p.spec ?? null, p.metadata.annotations?.[PolicyForAnnotation] ?? null]);

export const makePolicyValidation = (directory: NetworkDirectoryService) => (req: AdmissionRequest, ref: ObjectRef) =>
  Effect.gen(function* () {
    if (req.operation !== "CREATE" && req.operation !== "UPDATE") return {};
    const policy = yield* SchemaParser.decodeUnknownEffect(MultiNetworkPolicy)(req.object, { errors: "all" }).pipe(
      Effect.mapError((issue) => denied(ref, problemsOf(issue).map((p) => problem(p.path, "schema", p.message)))),
    );
    if (req.operation === "UPDATE") {
      // A policy admitted under older rules stays editable as long as what the rules read is unchanged.
      const old = yield* Effect.option(SchemaParser.decodeUnknownEffect(MultiNetworkPolicy)(req.oldObject));
      if (old._tag === "Some" && content(old.value) === content(policy)) return {};
    }
    const verdict = validatePolicy(policy);
    if (verdict.problems.length > 0) return yield* denied(ref, verdict.problems);
    const namespace = policy.metadata.namespace ?? req.namespace ?? "";
    const missing = yield* missingNetworks(directory, policy, namespace);
    return { warnings: [...verdict.warnings, ...missing].map(renderPolicyProblem) };
  });
