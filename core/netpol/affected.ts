// Which pods need recompiling after a change, without recompiling the world: a pod's rules depend only on the
// policies that select it, and those policies depend on other objects only through their peers (pods and
// namespaces their selectors pick, and for egress named ports the ports of pods on the network). The answer is a
// superset of the pods whose compiled rules really changed — never a subset (a property test holds it to that).
import type { MultiNetworkPolicy } from "../api/netpol.ts";
import {
  type Labels,
  namespaceLabels,
  type PodKey,
  type PolicyKey,
  type PolicyWorld,
  type WorldAttachment,
  type WorldPod,
} from "./model.ts";
import { peerSelectsPod } from "./peers.ts";
import { policySelectsPod, selectorMatches } from "./select.ts";

const sameLabels = (a: Labels | undefined, b: Labels | undefined): boolean => {
  if (a === b) return true;
  if (!a || !b) return false;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
};

const samePod = (a: WorldPod | undefined, b: WorldPod | undefined): boolean =>
  a === b ||
  (!!a && !!b && sameLabels(a.labels, b.labels) && a.ports.length === b.ports.length &&
    a.ports.every((p, i) =>
      p.name === b.ports[i].name && p.port === b.ports[i].port && p.protocol === b.ports[i].protocol
    ));

const sameAttachments = (a: ReadonlyArray<WorldAttachment> = [], b: ReadonlyArray<WorldAttachment> = []): boolean =>
  a === b ||
  (a.length === b.length &&
    a.every((x, i) =>
      x.network === b[i].network && x.ifName === b[i].ifName && x.v4.join() === b[i].v4.join() &&
      x.v6.join() === b[i].v6.join()
    ));

function changedKeys<K, V>(a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>, same: (x?: V, y?: V) => boolean): Set<K> {
  const out = new Set<K>();
  for (const [k, v] of a) if (!same(v, b.get(k))) out.add(k);
  for (const [k, v] of b) if (!a.has(k) && !same(undefined, v)) out.add(k);
  return out;
}

const rulesOf = (p: MultiNetworkPolicy) => [
  ...(p.spec?.ingress ?? []).map((r) => ({ peers: r.from ?? [], ports: r.ports ?? [], egress: false })),
  ...(p.spec?.egress ?? []).map((r) => ({ peers: r.to ?? [], ports: r.ports ?? [], egress: true })),
];

/** Whether the policy's compiled result can depend on this pod as a peer (selected, or by its named ports). */
function dependsOnPod(world: PolicyWorld, policy: MultiNetworkPolicy, pod: WorldPod | undefined): boolean {
  if (!pod) return false;
  return rulesOf(policy).some((r) =>
    r.peers.some((peer) => peerSelectsPod(world, policy, peer, pod)) ||
    // Egress named ports resolve on every destination pod the peers admit (ipBlocks and "all" included).
    (r.egress && r.ports.some((p) => typeof p.port === "string" && !/^\d+$/.test(p.port)))
  );
}

/** Whether a namespace's labels (either version) can change what the policy's namespaceSelectors pick. */
function dependsOnNamespace(policy: MultiNetworkPolicy, labels: ReadonlyArray<Labels>): boolean {
  return rulesOf(policy).some((r) =>
    r.peers.some((peer) => peer.namespaceSelector && labels.some((l) => selectorMatches(peer.namespaceSelector!, l)))
  );
}

/** The pods a policy selects in a world. */
function selectedBy(world: PolicyWorld, policy: MultiNetworkPolicy | undefined, out: Set<PodKey>): void {
  if (!policy) return;
  for (const [key, pod] of world.pods) if (policySelectsPod(policy, pod.namespace, pod.labels)) out.add(key);
}

/**
 * The pods (of `candidates`, or all) whose compiled rules may differ between `before` and `after`. World builders
 * that keep unchanged objects identical make this cheap; equal copies are compared by value.
 */
export function affectedPods(before: PolicyWorld, after: PolicyWorld, candidates?: Iterable<PodKey>): Set<PodKey> {
  const out = new Set<PodKey>();
  const touched = new Set<PolicyKey>();
  const touch = (key: PolicyKey) => touched.add(key);
  for (
    const key of changedKeys(
      before.policies,
      after.policies,
      (a, b) => a === b || JSON.stringify(a) === JSON.stringify(b),
    )
  ) {
    touch(key);
  }
  const pods = new Set([
    ...changedKeys(before.pods, after.pods, samePod),
    ...changedKeys(before.attachments, after.attachments, (a, b) => sameAttachments(a, b)),
  ]);
  const nsChanged = changedKeys(before.namespaces, after.namespaces, (a, b) => sameLabels(a ?? {}, b ?? {}));
  const nsLabels = [...nsChanged].flatMap((n) => [namespaceLabels(before, n), namespaceLabels(after, n)]);
  for (const key of pods) out.add(key);
  for (const world of [before, after]) {
    for (const [key, policy] of world.policies) {
      if (touched.has(key)) continue;
      const hit = [...pods].some((p) => dependsOnPod(world, policy, world.pods.get(p))) ||
        (nsLabels.length > 0 && dependsOnNamespace(policy, nsLabels));
      if (hit) touch(key);
    }
  }
  for (const key of touched) {
    selectedBy(before, before.policies.get(key), out);
    selectedBy(after, after.policies.get(key), out);
  }
  if (candidates === undefined) return out;
  const wanted = new Set(candidates);
  return new Set([...out].filter((k) => wanted.has(k)));
}
