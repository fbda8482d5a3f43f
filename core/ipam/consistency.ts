// The consistency checker behind `danmctl leaks`: compares IPBlock reservations, DanmEps, pods, their network-status
// and networks, and reports duplicates, leaks and disagreements across all networks. Read-only; the reclaimers do
// the freeing. (What only a node can see — links, namespaces, sandbox records — the chaos run checks on top.)
import { Clock, Effect } from "effect";
import { NetworkStatusAnnotation, type NetworkStatusEntry, parseNetworkStatus } from "../api/annotations.ts";
import { type DanmEp, DanmEpResource, type Network, type NetworkKind, networkResources } from "../api/danm.ts";
import { type IPBlock, ipBlockResource, type Reservation } from "../api/ipam.ts";
import { PodResource } from "../api/k8s.ts";
import { contains, formatIp, parseCidr, parseIp } from "../net/ip.ts";
import { Kube, type ResourceType } from "../ports/kube.ts";

export interface ConsistencyInput {
  readonly blocks: ReadonlyArray<IPBlock>;
  readonly endpoints: ReadonlyArray<DanmEp>;
  /** "namespace/name" → uid of every existing pod that has not finished. */
  readonly pods: ReadonlyMap<string, string>;
  readonly networks: ReadonlyArray<{ readonly kind: NetworkKind; readonly network: Network }>;
  /** Reservations younger than this are in-flight ADDs, not leaks. */
  readonly graceSeconds: number;
  readonly nowMs: number;
  /**
   * Running pods past the grace period → their network-status entries (a string: why the annotation is unusable).
   * Each DanmEp of such a pod must appear there with the same addresses.
   */
  readonly networkStatus?: ReadonlyMap<string, ReadonlyArray<NetworkStatusEntry> | string>;
}

export interface ConsistencyReport {
  /** One address of one network held by more than one pod interface. */
  readonly duplicates: ReadonlyArray<{ network: string; address: string; holders: ReadonlyArray<string> }>;
  /** Reservations whose pod is gone (or was recreated under another UID). */
  readonly leakedReservations: ReadonlyArray<
    { network: string; address: string; pod: string; block: string; reason: string }
  >;
  /** Reservations of a live pod that no DanmEp records (an ADD that never finished). */
  readonly unrecordedReservations: ReadonlyArray<{ network: string; address: string; pod: string; block: string }>;
  /** DanmEps whose pod is gone. */
  readonly orphanEndpoints: ReadonlyArray<{ endpoint: string; pod: string; network: string }>;
  /** danm-managed addresses of DanmEps that no reservation backs. */
  readonly unreservedEndpoints: ReadonlyArray<{ endpoint: string; network: string; address: string }>;
  /** Blocks of networks that no longer exist. */
  readonly staleBlocks: ReadonlyArray<string>;
  /** Running pods whose network-status disagrees with their DanmEps. */
  readonly statusMismatches: ReadonlyArray<{ pod: string; problem: string }>;
  /** Live pods with DanmEps of more than one sandbox (an earlier sandbox's were never removed). */
  readonly sandboxMismatches: ReadonlyArray<{ pod: string; sandboxes: ReadonlyArray<string> }>;
}

const networkLabel = (kind: string, namespace: string | undefined, name: string) =>
  namespace && kind !== "ClusterNetwork" ? `${kind} ${namespace}/${name}` : `${kind} ${name}`;

const bare = (a: string | undefined) => (a && a !== "none" && a !== "dynamic" ? a.split("/")[0] : undefined);

export function checkConsistency(input: ConsistencyInput): ConsistencyReport {
  const networksByUid = new Map<string, { kind: NetworkKind; network: Network }>();
  const networkByKey = new Map<string, { kind: NetworkKind; network: Network }>();
  for (const n of input.networks) {
    if (n.network.metadata.uid) networksByUid.set(n.network.metadata.uid, n);
    networkByKey.set(networkLabel(n.kind, n.network.metadata.namespace, n.network.metadata.name ?? ""), n);
  }

  // Reservations, keyed by network label + address.
  const reserved = new Map<string, { r: Reservation; block: string }[]>();
  const staleBlocks: string[] = [];
  for (const b of input.blocks) {
    const name = b.metadata.name ?? "";
    if (!networksByUid.has(b.spec.network.uid)) {
      staleBlocks.push(name);
      continue;
    }
    const cidr = parseCidr(b.spec.cidr)?.cidr;
    if (!cidr) continue;
    const label = networkLabel(b.spec.network.kind, b.spec.network.namespace, b.spec.network.name);
    for (const [off, r] of Object.entries(b.spec.reservations)) {
      const address = formatIp({ family: cidr.family, value: cidr.base + BigInt(off) });
      const key = `${label}|${address}`;
      reserved.set(key, [...(reserved.get(key) ?? []), { r, block: name }]);
    }
  }

  const duplicates: { network: string; address: string; holders: string[] }[] = [];
  const orphanEndpoints: { endpoint: string; pod: string; network: string }[] = [];
  const unreservedEndpoints: { endpoint: string; network: string; address: string }[] = [];
  const recorded = new Set<string>();
  const holders = new Map<string, Set<string>>();
  /** Live pod → the sandboxes its DanmEps name, and the DanmEps. */
  const podEndpoints = new Map<string, { sandboxes: Set<string>; eps: DanmEp[] }>();
  for (const ep of input.endpoints) {
    const ns = ep.metadata.namespace ?? "";
    const kind: NetworkKind = ep.spec.apiType === "" || ep.spec.apiType === undefined ? "DanmNet" : ep.spec.apiType;
    const label = networkLabel(kind, ns, ep.spec.NetworkName);
    const epName = `${ns}/${ep.metadata.name ?? ""}`;
    const podKey = `${ns}/${ep.spec.Pod}`;
    const podUid = input.pods.get(podKey);
    if (podUid === undefined || (ep.spec.PodUID && ep.spec.PodUID !== podUid)) {
      orphanEndpoints.push({ endpoint: epName, pod: podKey, network: label });
    } else {
      const mine = podEndpoints.get(podKey) ?? { sandboxes: new Set<string>(), eps: [] };
      mine.sandboxes.add(ep.spec.CID ?? "");
      mine.eps.push(ep);
      podEndpoints.set(podKey, mine);
    }
    const net = networkByKey.get(label);
    for (const address of [bare(ep.spec.Interface.Address), bare(ep.spec.Interface.AddressIPv6)]) {
      if (!address) continue;
      const key = `${label}|${address}`;
      const h = holders.get(key) ?? new Set<string>();
      h.add(`${podKey}/${ep.spec.Interface.Name}`);
      holders.set(key, h);
      recorded.add(`${key}|${ep.spec.PodUID ?? ""}|${ep.spec.Interface.Name}`);
      // Only addresses inside the network's CIDRs are danm's to reserve (delegates may bring their own).
      const opts = net?.network.spec.Options;
      const ip = parseIp(address);
      const managed = ip !== undefined && [opts?.cidr, opts?.net6].some((c) => {
        const p = c ? parseCidr(c) : undefined;
        return p !== undefined && contains(p.cidr, ip);
      });
      if (managed && !reserved.has(key)) unreservedEndpoints.push({ endpoint: epName, network: label, address });
    }
  }
  for (const [key, h] of holders) {
    if (h.size > 1) {
      const [network, address] = key.split("|");
      duplicates.push({ network, address, holders: [...h].sort() });
    }
  }
  for (const [key, rs] of reserved) {
    if (rs.length > 1) {
      const [network, address] = key.split("|");
      duplicates.push({ network, address, holders: rs.map((x) => `${x.r.pod}/${x.r.iface}`) });
    }
  }

  const leakedReservations: { network: string; address: string; pod: string; block: string; reason: string }[] = [];
  const unrecordedReservations: { network: string; address: string; pod: string; block: string }[] = [];
  for (const [key, rs] of reserved) {
    const [network, address] = key.split("|");
    for (const { r, block } of rs) {
      if ((input.nowMs - Date.parse(r.since)) / 1000 < input.graceSeconds) continue;
      const uid = input.pods.get(r.pod);
      if (uid !== r.podUid) {
        leakedReservations.push({
          network,
          address,
          pod: r.pod,
          block,
          reason: uid ? "pod recreated with another UID" : "pod gone",
        });
      } else if (!recorded.has(`${key}|${r.podUid}|${r.iface}`)) {
        unrecordedReservations.push({ network, address, pod: r.pod, block });
      }
    }
  }
  const sandboxMismatches = [...podEndpoints].filter(([, m]) => m.sandboxes.size > 1).map(([pod, m]) => ({
    pod,
    sandboxes: [...m.sandboxes].sort(),
  }));
  const statusMismatches: { pod: string; problem: string }[] = [];
  for (const [pod, status] of input.networkStatus ?? []) {
    const eps = podEndpoints.get(pod)?.eps ?? [];
    if (typeof status === "string") {
      if (eps.length > 0) statusMismatches.push({ pod, problem: status });
      continue;
    }
    for (const ep of eps) {
      const iface = ep.spec.Interface.Name;
      const want = [bare(ep.spec.Interface.Address), bare(ep.spec.Interface.AddressIPv6)]
        .filter((a): a is string => a !== undefined).sort();
      const entry = status.find((e) => e.interface === iface);
      const got = [...(entry?.ips ?? [])].sort();
      if (!entry) statusMismatches.push({ pod, problem: `${iface} (DanmEp ${ep.metadata.name}) is not listed` });
      else if (want.join() !== got.join()) {
        statusMismatches.push({
          pod,
          problem: `${iface} lists ${got.join(",") || "no address"}, its DanmEp ${ep.metadata.name} ${
            want.join(",") || "none"
          }`,
        });
      }
    }
  }
  return {
    duplicates,
    leakedReservations,
    unrecordedReservations,
    orphanEndpoints,
    unreservedEndpoints,
    staleBlocks,
    statusMismatches,
    sandboxMismatches,
  };
}

export const isConsistent = (r: ConsistencyReport): boolean =>
  r.duplicates.length + r.leakedReservations.length + r.unrecordedReservations.length + r.orphanEndpoints.length +
      r.unreservedEndpoints.length + r.staleBlocks.length + r.statusMismatches.length +
      r.sandboxMismatches.length === 0;

/** Gathers everything from the API and checks it. */
export const checkClusterConsistency = (opts: { graceSeconds: number }) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const [blocks, endpoints, pods] = yield* Effect.all([
      kube.list(ipBlockResource),
      kube.list(DanmEpResource),
      kube.list(PodResource),
    ], { concurrency: 3 });
    const networks: { kind: NetworkKind; network: Network }[] = [];
    for (const kind of ["DanmNet", "TenantNetwork", "ClusterNetwork"] as const) {
      const rt: ResourceType<Network> = networkResources[kind];
      const list = yield* kube.list(rt).pipe(
        // A cluster may run only the lightweight or only the production CRDs.
        Effect.catchTag("KubeNotFound", () => Effect.succeed({ items: [] as ReadonlyArray<Network> })),
      );
      for (const network of list.items) networks.push({ kind, network });
    }
    const live = new Map<string, string>();
    const networkStatus = new Map<string, ReadonlyArray<NetworkStatusEntry> | string>();
    const nowMs = yield* Clock.currentTimeMillis;
    for (const p of pods.items) {
      if (p.status?.phase === "Succeeded" || p.status?.phase === "Failed") continue;
      const key = `${p.metadata.namespace}/${p.metadata.name}`;
      live.set(key, p.metadata.uid ?? "");
      // Running and Ready for longer than the grace period: its ADD finished, network-status is written.
      const ready = p.status?.conditions?.find((c) => c.type === "Ready" && c.status === "True");
      const since = Date.parse(ready?.lastTransitionTime ?? "");
      if (
        p.status?.phase !== "Running" || p.metadata.deletionTimestamp || !(nowMs - since >= opts.graceSeconds * 1000)
      ) {
        continue;
      }
      const value = p.metadata.annotations?.[NetworkStatusAnnotation];
      networkStatus.set(
        key,
        value === undefined
          ? `no ${NetworkStatusAnnotation} annotation`
          : yield* parseNetworkStatus(value).pipe(Effect.catch((e) => Effect.succeed(e.message))),
      );
    }
    return checkConsistency({
      blocks: blocks.items,
      endpoints: endpoints.items,
      pods: live,
      networks,
      graceSeconds: opts.graceSeconds,
      nowMs,
      networkStatus,
    });
  });
