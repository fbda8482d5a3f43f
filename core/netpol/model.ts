// The MultiNetworkPolicy engine's data model (#22). A `PolicyWorld` is plain data — policies, pods, namespaces and
// which pod interface is on which network with which addresses — built by whoever holds the informers (the node
// agent, the sim, danmctl). The engine (select → peers → compile → nft / reach) is pure over it, so enforcement,
// the sim's view and `danmctl dry-run` read the same compiled rules and can never disagree.
import type { DanmEp, NetworkKind } from "../api/danm.ts";
import type { NetworkStatusEntry } from "../api/annotations.ts";
import type { Pod, Protocol } from "../api/k8s.ts";
import type { MultiNetworkPolicy } from "../api/netpol.ts";
import { formatIp, parseIp } from "../net/ip.ts";

export type { Protocol };

/** `namespace/name` of a pod. */
export type PodKey = string;
/** `namespace/name` of a MultiNetworkPolicy. */
export type PolicyKey = string;
/**
 * A network an interface is on: `DanmNet:ns/name`, `TenantNetwork:ns/name`, `ClusterNetwork:name` or
 * `NetworkAttachmentDefinition:ns/name` (see `networkKey`).
 */
export type NetworkKey = string;

export type Labels = Readonly<Record<string, string>>;

export interface NamedPort {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

export interface WorldPod {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Labels;
  /** The named container ports (unnamed ones play no part in policy). */
  readonly ports: ReadonlyArray<NamedPort>;
}

/**
 * One pod interface on a network danm manages. The primary interface (eth0) is here when danm provides it: its
 * addresses are peers like any other, but it is never policed (select.ts `isPrimaryInterface`).
 */
export interface WorldAttachment {
  readonly network: NetworkKey;
  readonly ifName: string;
  /** Plain canonical addresses (no prefix). */
  readonly v4: ReadonlyArray<string>;
  readonly v6: ReadonlyArray<string>;
}

export interface PolicyWorld {
  readonly policies: ReadonlyMap<PolicyKey, MultiNetworkPolicy>;
  readonly pods: ReadonlyMap<PodKey, WorldPod>;
  /** Namespace name → its labels. A namespace missing here still carries `kubernetes.io/metadata.name`. */
  readonly namespaces: ReadonlyMap<string, Labels>;
  /** Pod → its danm-managed interfaces. */
  readonly attachments: ReadonlyMap<PodKey, ReadonlyArray<WorldAttachment>>;
}

// --- the compiled rules of one pod ------------------------------------------------------------------------

/** Canonical CIDRs, sorted, merged, disjoint: what a peer list resolves to on one network. */
export interface AddressBlocks {
  readonly v4: ReadonlyArray<string>;
  readonly v6: ReadonlyArray<string>;
}

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** Which policy rule allowed a flow: `rule` indexes the policy's `ingress` or `egress` list. */
export interface RuleOrigin {
  readonly policy: PolicyKey;
  readonly rule: number;
}

/** One allowed flow of an isolated direction: from/to `peers`, with `protocol` and `ports` (absent = any). */
export interface Flow {
  readonly peers: AddressBlocks | "any";
  readonly protocol?: Protocol;
  readonly ports?: PortRange;
  readonly origin: RuleOrigin;
}

/** An isolated direction: only `flows` pass (plus replies and what IPv6 needs on a link). */
export interface Direction {
  /** The policies that isolate it (sorted). */
  readonly policies: ReadonlyArray<PolicyKey>;
  readonly flows: ReadonlyArray<Flow>;
}

export interface InterfaceRules {
  readonly ifName: string;
  readonly network: NetworkKey;
  /** Absent: this direction is not isolated (everything passes). */
  readonly ingress?: Direction;
  readonly egress?: Direction;
}

/** A pod's compiled rules: only its policed interfaces, sorted by name. Empty = no policy applies. */
export interface PodRules {
  readonly pod: PodKey;
  readonly interfaces: ReadonlyArray<InterfaceRules>;
}

// --- keys and world building ------------------------------------------------------------------------------

export const podKey = (namespace: string, name: string): PodKey => `${namespace}/${name}`;

export const NadKind = "NetworkAttachmentDefinition";
export type NetworkKeyKind = NetworkKind | typeof NadKind;

/** The key of a network: ClusterNetworks are cluster-scoped, the other kinds namespaced. */
export const networkKey = (kind: NetworkKeyKind, namespace: string, name: string): NetworkKey =>
  kind === "ClusterNetwork" ? `ClusterNetwork:${name}` : `${kind}:${namespace}/${name}`;

export const NamespaceNameLabel = "kubernetes.io/metadata.name";

/** A namespace's labels as selectors see them (the apiserver always sets `kubernetes.io/metadata.name`). */
export const namespaceLabels = (world: PolicyWorld, namespace: string): Labels => ({
  ...(world.namespaces.get(namespace) ?? {}),
  [NamespaceNameLabel]: namespace,
});

/** A pod as the engine sees it: labels and named container ports (protocol defaults to TCP). */
export function worldPod(pod: Pod): WorldPod {
  const ports = (pod.spec?.containers ?? []).flatMap((c) =>
    (c.ports ?? []).flatMap((p) =>
      p.name ? [{ name: p.name, port: p.containerPort, protocol: p.protocol ?? "TCP" } satisfies NamedPort] : []
    )
  );
  return {
    namespace: pod.metadata.namespace ?? "",
    name: pod.metadata.name ?? "",
    labels: pod.metadata.labels ?? {},
    ports,
  };
}

/** "10.0.0.5/24" → ["10.0.0.5"] canonical; "", "none", garbage → []. */
function plainAddress(text: string | undefined, family: 4 | 6): string[] {
  if (!text) return [];
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  return ip && ip.family === family ? [formatIp(ip)] : [];
}

/** The interface a DanmEp records (DanmNet, TenantNetwork or ClusterNetwork; "" and absent apiType = DanmNet). */
export function attachmentOfDanmEp(ep: DanmEp): WorldAttachment {
  const kind: NetworkKind = ep.spec.apiType ? ep.spec.apiType : "DanmNet";
  return {
    network: networkKey(kind, ep.metadata.namespace ?? "", ep.spec.NetworkName),
    ifName: ep.spec.Interface.Name,
    v4: plainAddress(ep.spec.Interface.Address, 4),
    v6: plainAddress(ep.spec.Interface.AddressIPv6, 6),
  };
}

/**
 * A pod's danm-managed interfaces: its DanmEps (danm networks) plus the NetworkAttachmentDefinition attachments of
 * its network-status annotation (NADs get no DanmEp). The `default` entry (the cluster CNI's primary interface) and
 * entries for interfaces a DanmEp already records are skipped; with `podUid`, DanmEps of another pod UID are too.
 * Sorted by interface name.
 */
export function podAttachments(
  podNamespace: string,
  danmEps: ReadonlyArray<DanmEp>,
  networkStatus: ReadonlyArray<NetworkStatusEntry>,
  podUid?: string,
): ReadonlyArray<WorldAttachment> {
  // A DanmEp left by an earlier pod of the same name (another UID) is not this pod's interface.
  const own = danmEps.filter((ep) => !podUid || !ep.spec.PodUID || ep.spec.PodUID === podUid);
  const out = own.map(attachmentOfDanmEp);
  const recorded = new Set(out.map((a) => a.ifName));
  for (const entry of networkStatus) {
    if (entry.default || !entry.interface || recorded.has(entry.interface)) continue;
    const slash = entry.name.indexOf("/");
    const [namespace, name] = slash < 0
      ? [podNamespace, entry.name]
      : [entry.name.slice(0, slash), entry.name.slice(slash + 1)];
    out.push({
      network: networkKey(NadKind, namespace, name),
      ifName: entry.interface,
      v4: (entry.ips ?? []).flatMap((ip) => plainAddress(ip, 4)),
      v6: (entry.ips ?? []).flatMap((ip) => plainAddress(ip, 6)),
    });
    recorded.add(entry.interface);
  }
  return out.sort((a, b) => (a.ifName < b.ifName ? -1 : a.ifName > b.ifName ? 1 : 0));
}

export const emptyWorld: PolicyWorld = {
  policies: new Map(),
  pods: new Map(),
  namespaces: new Map(),
  attachments: new Map(),
};
