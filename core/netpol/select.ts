// Which policies apply to which pod interface: label selectors, the policy-for annotation resolved to network
// keys, and NetworkPolicy's policyTypes defaulting.
import { Effect } from "effect";
import type { AnnotationError } from "../api/annotations.ts";
import { FirstInterfaceName } from "../podnetworks/naming.ts";
import { type LabelSelector, type MultiNetworkPolicy, parsePolicyFor, PolicyForAnnotation } from "../api/netpol.ts";
import {
  type Labels,
  type NetworkKey,
  networkKey,
  type PodKey,
  podKey,
  type PolicyKey,
  type PolicyWorld,
  type WorldAttachment,
} from "./model.ts";

/**
 * metav1.LabelSelector semantics: matchLabels AND every matchExpression. An absent/null selector is `undefined`
 * here and the callers decide what it means; an empty one matches everything. An unknown operator matches nothing
 * (the webhook refuses it up front; a policy that slipped through must not open traffic).
 */
export function selectorMatches(selector: LabelSelector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case "In":
        if (!has || !values.includes(labels[e.key])) return false;
        break;
      case "NotIn":
        if (has && values.includes(labels[e.key])) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

export const policyKeyOf = (p: MultiNetworkPolicy): PolicyKey =>
  podKey(p.metadata.namespace ?? "", p.metadata.name ?? "");

/** A policy's networks, or why it polices none. */
export type PolicyNetworks =
  | { readonly _tag: "Networks"; readonly networks: ReadonlySet<NetworkKey> }
  | { readonly _tag: "NoNetworks" }
  | { readonly _tag: "Invalid"; readonly error: AnnotationError };

const resolved = new WeakMap<MultiNetworkPolicy, PolicyNetworks>();

/**
 * The network keys a policy's policy-for names. `name` and `namespace/name` mean a NetworkAttachmentDefinition or a
 * DanmNet of that name (the policy's namespace when none is given); `DanmNet/`, `TenantNetwork/` live in the
 * policy's namespace; `ClusterNetwork/` is cluster-scoped. No or empty annotation → no networks.
 */
export function policyNetworks(policy: MultiNetworkPolicy): PolicyNetworks {
  const hit = resolved.get(policy);
  if (hit) return hit;
  const value = policy.metadata.annotations?.[PolicyForAnnotation];
  const own = policy.metadata.namespace ?? "";
  let out: PolicyNetworks;
  if (value === undefined || value.trim() === "") out = { _tag: "NoNetworks" };
  else {
    const parsed = Effect.runSync(Effect.result(parsePolicyFor(value)));
    if (parsed._tag === "Failure") out = { _tag: "Invalid", error: parsed.failure };
    else {
      const networks = new Set<NetworkKey>();
      for (const ref of parsed.success) {
        const ns = ref.namespace ?? own;
        if (ref.kind === undefined) {
          networks.add(networkKey("NetworkAttachmentDefinition", ns, ref.name));
          networks.add(networkKey("DanmNet", ns, ref.name));
        } else networks.add(networkKey(ref.kind, ns, ref.name));
      }
      out = { _tag: "Networks", networks };
    }
  }
  resolved.set(policy, out);
  return out;
}

/** NetworkPolicy's defaulting: Ingress always, Egress when egress rules exist — unless policyTypes says. */
export function policyTypes(policy: MultiNetworkPolicy): { readonly ingress: boolean; readonly egress: boolean } {
  const spec = policy.spec;
  const types = spec?.policyTypes;
  if (types && types.length > 0) return { ingress: types.includes("Ingress"), egress: types.includes("Egress") };
  return { ingress: true, egress: (spec?.egress ?? []).length > 0 };
}

/** Whether the policy's podSelector picks this pod (same namespace only). A policy without spec selects nobody. */
export function policySelectsPod(policy: MultiNetworkPolicy, namespace: string, labels: Labels): boolean {
  const spec = policy.spec;
  return spec !== undefined && (policy.metadata.namespace ?? "") === namespace &&
    selectorMatches(spec.podSelector, labels);
}

/** Policies whose policy-for is unparsable: they apply to nothing and are reported (sorted by key). */
export function invalidPolicies(
  world: PolicyWorld,
): ReadonlyArray<{ readonly policy: PolicyKey; readonly error: AnnotationError }> {
  const out: Array<{ policy: PolicyKey; error: AnnotationError }> = [];
  for (const [key, p] of world.policies) {
    const n = policyNetworks(p);
    if (n._tag === "Invalid") out.push({ policy: key, error: n.error });
  }
  return out.sort((a, b) => (a.policy < b.policy ? -1 : 1));
}

/**
 * The pod's primary interface (`eth0`, sequence index 0: core/podnetworks/naming.ts) belongs to the cluster's pod
 * network — the kubelet's pod IP, probes, Services — even when danm itself provides it: no MultiNetworkPolicy
 * polices it, whatever network it is on (#22: "the primary interface untouched"). Its addresses still count as peers.
 */
export const isPrimaryInterface = (attachment: WorldAttachment): boolean => attachment.ifName === FirstInterfaceName;

/** One interface of a pod and the policies that apply to it (sorted by key). */
export interface AppliedInterface {
  readonly attachment: WorldAttachment;
  readonly policies: ReadonlyArray<readonly [PolicyKey, MultiNetworkPolicy]>;
  /** The primary interface: the policies name its network, but it is not policed (`isPrimaryInterface`). */
  readonly primary: boolean;
}

/**
 * For each of the pod's danm interfaces, the policies that select the pod for its network; interfaces with none are
 * left out. The primary interface is listed (marked `primary`) so views can say why it is open.
 */
export function selectingPolicies(world: PolicyWorld, pod: PodKey): ReadonlyArray<AppliedInterface> {
  const p = world.pods.get(pod);
  const attachments = world.attachments.get(pod) ?? [];
  if (!p || attachments.length === 0) return [];
  const selecting = [...world.policies].filter(([, policy]) => policySelectsPod(policy, p.namespace, p.labels))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const out: AppliedInterface[] = [];
  for (const attachment of attachments) {
    const policies = selecting.filter(([, policy]) => {
      const n = policyNetworks(policy);
      return n._tag === "Networks" && n.networks.has(attachment.network);
    });
    if (policies.length > 0) out.push({ attachment, policies, primary: isPrimaryInterface(attachment) });
  }
  return out;
}

/** The pod's policed interfaces and the policies that apply to each: `selectingPolicies` without the primary one. */
export function applyingPolicies(world: PolicyWorld, pod: PodKey): ReadonlyArray<AppliedInterface> {
  return selectingPolicies(world, pod).filter((a) => !a.primary);
}
