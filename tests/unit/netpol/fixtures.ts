// Small builders for the policy engine's tests: a world from terse pods, policies and attachments.
import type { MultiNetworkPolicy, MultiNetworkPolicySpec } from "../../../core/api/netpol.ts";
import { PolicyForAnnotation } from "../../../core/api/netpol.ts";
import {
  type Labels,
  type NamedPort,
  type PodKey,
  podKey,
  type PolicyWorld,
  type WorldAttachment,
  type WorldPod,
} from "../../../core/netpol/model.ts";
import { policyKeyOf } from "../../../core/netpol/select.ts";

export const NET = "DanmNet:ns1/net1";
export const NET2 = "ClusterNetwork:cnet";

export interface PodSpec {
  readonly ns?: string;
  readonly name: string;
  readonly labels?: Labels;
  readonly ports?: ReadonlyArray<NamedPort>;
  readonly ifs?: ReadonlyArray<WorldAttachment>;
}

export const iface = (ifName: string, network: string, v4: string[] = [], v6: string[] = []): WorldAttachment => ({
  network,
  ifName,
  v4,
  v6,
});

export function policy(
  ns: string,
  name: string,
  spec: MultiNetworkPolicySpec,
  policyFor: string | null = "net1",
): MultiNetworkPolicy {
  return {
    metadata: {
      namespace: ns,
      name,
      ...(policyFor === null ? {} : { annotations: { [PolicyForAnnotation]: policyFor } }),
    },
    spec,
  };
}

export function world(
  pods: ReadonlyArray<PodSpec>,
  policies: ReadonlyArray<MultiNetworkPolicy>,
  namespaces: Readonly<Record<string, Labels>> = {},
): PolicyWorld {
  const podMap = new Map<PodKey, WorldPod>();
  const attachments = new Map<PodKey, ReadonlyArray<WorldAttachment>>();
  for (const p of pods) {
    const ns = p.ns ?? "ns1";
    const key = podKey(ns, p.name);
    podMap.set(key, { namespace: ns, name: p.name, labels: p.labels ?? {}, ports: p.ports ?? [] });
    if (p.ifs) attachments.set(key, p.ifs);
  }
  return {
    policies: new Map(policies.map((p) => [policyKeyOf(p), p])),
    pods: podMap,
    namespaces: new Map(Object.entries(namespaces)),
    attachments,
  };
}
