// The NPWG MultiNetworkPolicy API (`k8s.cni.cncf.io` v1beta1 and v1beta2: the same shape as
// networking.k8s.io/v1 NetworkPolicy, plus the `k8s.v1.cni.cncf.io/policy-for` annotation naming the networks it
// polices). These schemas are the wire shape only, lenient like the other foreign kinds; the meaning of each field
// (CIDRs, port ranges, selector operators) is checked by the webhook's validation, which names the field.
import { Effect, Schema } from "effect";
import { AnnotationError } from "./annotations.ts";
import type { ResourceType } from "../ports/kube.ts";
import { ObjectMeta, StringMap } from "./meta.ts";
import { IntOrString, Protocol } from "./k8s.ts";

const opt = Schema.optionalKey;
const Str = Schema.String;

export const PolicyForAnnotation = "k8s.v1.cni.cncf.io/policy-for";

/** metav1.LabelSelector. An empty selector selects everything; `null` (Go's nil pointer) counts as absent. */
export const LabelSelectorRequirement = Schema.Struct({
  key: Str,
  operator: Str, // In | NotIn | Exists | DoesNotExist — checked by validation, not decoding
  values: opt(Schema.NullOr(Schema.Array(Str))),
});
export type LabelSelectorRequirement = typeof LabelSelectorRequirement.Type;

export const LabelSelector = Schema.Struct({
  matchLabels: opt(Schema.NullOr(StringMap)),
  matchExpressions: opt(Schema.NullOr(Schema.Array(LabelSelectorRequirement))),
});
export type LabelSelector = typeof LabelSelector.Type;

export const IPBlock = Schema.Struct({ cidr: Str, except: opt(Schema.NullOr(Schema.Array(Str))) });
export type IPBlock = typeof IPBlock.Type;

export const PolicyPeer = Schema.Struct({
  podSelector: opt(Schema.NullOr(LabelSelector)),
  namespaceSelector: opt(Schema.NullOr(LabelSelector)),
  ipBlock: opt(Schema.NullOr(IPBlock)),
});
export type PolicyPeer = typeof PolicyPeer.Type;

export const PolicyPort = Schema.Struct({
  protocol: opt(Schema.NullOr(Protocol)),
  port: opt(Schema.NullOr(IntOrString)),
  endPort: opt(Schema.NullOr(Schema.Number)),
});
export type PolicyPort = typeof PolicyPort.Type;

export const IngressRule = Schema.Struct({
  ports: opt(Schema.NullOr(Schema.Array(PolicyPort))),
  from: opt(Schema.NullOr(Schema.Array(PolicyPeer))),
});
export type IngressRule = typeof IngressRule.Type;

export const EgressRule = Schema.Struct({
  ports: opt(Schema.NullOr(Schema.Array(PolicyPort))),
  to: opt(Schema.NullOr(Schema.Array(PolicyPeer))),
});
export type EgressRule = typeof EgressRule.Type;

export const PolicyType = Schema.Literals(["Ingress", "Egress"]);
export type PolicyType = typeof PolicyType.Type;

export const MultiNetworkPolicySpec = Schema.Struct({
  podSelector: LabelSelector,
  ingress: opt(Schema.NullOr(Schema.Array(IngressRule))),
  egress: opt(Schema.NullOr(Schema.Array(EgressRule))),
  policyTypes: opt(Schema.NullOr(Schema.Array(PolicyType))),
});
export type MultiNetworkPolicySpec = typeof MultiNetworkPolicySpec.Type;

export const MultiNetworkPolicy = Schema.Struct({
  apiVersion: opt(Str),
  kind: opt(Str),
  metadata: ObjectMeta,
  spec: opt(MultiNetworkPolicySpec),
});
export type MultiNetworkPolicy = typeof MultiNetworkPolicy.Type;

/** The version danm reads and writes; the CRD serves v1beta1 and v1beta2 with the same schema. */
export const MultiNetworkPolicyResource: ResourceType<MultiNetworkPolicy, typeof MultiNetworkPolicy.Encoded> = {
  group: "k8s.cni.cncf.io",
  version: "v1beta1",
  kind: "MultiNetworkPolicy",
  plural: "multi-networkpolicies",
  namespaced: true,
  schema: MultiNetworkPolicy,
};

/**
 * One network a policy is for. `kind` is absent for a plain `name` / `namespace/name` (a NetworkAttachmentDefinition
 * or DanmNet of that name, in `namespace` or else the policy's own); `TenantNetwork/name` and `ClusterNetwork/name`
 * name danm's other kinds (a namespace can't be spelled with capitals, so the prefix is unambiguous), and
 * `DanmNet/name` names a DanmNet explicitly.
 */
export interface PolicyNetworkRef {
  readonly kind?: "DanmNet" | "TenantNetwork" | "ClusterNetwork";
  readonly namespace?: string;
  readonly name: string;
}

const dnsSubdomain = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const kinds = ["DanmNet", "TenantNetwork", "ClusterNetwork"] as const;

/** Parses `k8s.v1.cni.cncf.io/policy-for`: comma separated, whitespace around entries ignored. */
export function parsePolicyFor(value: string): Effect.Effect<ReadonlyArray<PolicyNetworkRef>, AnnotationError> {
  const refs: PolicyNetworkRef[] = [];
  const items = value.split(",").map((s) => s.trim());
  for (const [entry, item] of items.entries()) {
    const bad = (reason: string, field?: string) =>
      Effect.fail(
        new AnnotationError({
          annotation: PolicyForAnnotation,
          entry,
          ...(field === undefined ? {} : { field }),
          reason,
        }),
      );
    if (item === "") return bad(items.length === 1 ? "names no network" : "empty item (a stray comma?)");
    const parts = item.split("/").map((s) => s.trim());
    if (parts.length > 2) return bad(`"${item}" has more than one "/"`);
    const [prefix, name] = parts.length === 2 ? [parts[0], parts[1]] : [undefined, parts[0]];
    if (!dnsSubdomain.test(name) || name.length > 253) {
      return bad(`"${name}" is not a valid object name`, "name");
    }
    const kind = kinds.find((k) => k === prefix);
    if (
      prefix !== undefined && kind === undefined &&
      (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(prefix) || prefix.length > 63)
    ) {
      return bad(`"${prefix}" is neither a namespace nor one of ${kinds.join(", ")}`, "namespace");
    }
    refs.push(
      kind !== undefined ? { kind, name } : prefix !== undefined ? { namespace: prefix, name } : { name },
    );
  }
  return Effect.succeed(refs);
}
