// danmctl's read and repair commands. Each returns data (printed as JSON with `-o json`) and has a renderer
// for people.
import { Effect } from "effect";
import { HostInterfacesReady, type NetworkKind } from "../api/danm.ts";
import { checkClusterConsistency, type ConsistencyReport } from "../ipam/consistency.ts";
import { blockStoreFromKube, kubeOwnerDirectory } from "../ipam/kube.ts";
import { reclaimOrphans, type ReclaimReport } from "../ipam/reclaim.ts";
import { formatIp, parseCidr, parseIp } from "../net/ip.ts";
import { blocksOf, findNetwork, label, listNetworks, type PoolUsage, poolUsage } from "./networks.ts";
import { renderTable } from "./table.ts";

// --- showalloc -----------------------------------------------------------------------------------------------

export interface AllocationRow {
  readonly address: string;
  readonly pod: string;
  /** The owner as stored (packed in the IPBlock's text: shown here decoded). */
  readonly podUid: string;
  readonly sandbox: string;
  readonly iface: string;
  readonly node: string;
  readonly static: boolean;
  readonly since: string;
}

export interface ShowAlloc {
  readonly network: string;
  readonly pools: ReadonlyArray<Omit<PoolUsage, "capacity"> & { capacity: string }>;
  readonly allocations: ReadonlyArray<AllocationRow>;
}

export const showAlloc = (name: string, namespace: string | undefined, kind?: NetworkKind) =>
  Effect.gen(function* () {
    const n = yield* findNetwork(name, namespace, kind);
    const blocks = yield* blocksOf(n.network.metadata.uid ?? "");
    const allocations: AllocationRow[] = [];
    for (const b of blocks) {
      const cidr = parseCidr(b.spec.cidr)?.cidr;
      if (!cidr) continue;
      for (const [off, r] of Object.entries(b.spec.reservations)) {
        allocations.push({
          address: formatIp({ family: cidr.family, value: cidr.base + BigInt(off) }),
          pod: r.pod,
          podUid: r.podUid,
          sandbox: r.sandbox,
          iface: r.iface,
          node: r.node,
          static: r.static === true,
          since: r.since,
        });
      }
    }
    const key = (a: string) => parseIp(a)!;
    allocations.sort((a, b) => {
      const x = key(a.address), y = key(b.address);
      return x.family !== y.family ? x.family - y.family : x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
    });
    const result: ShowAlloc = {
      network: label(n),
      pools: poolUsage(n, blocks).map((p) => ({ ...p, capacity: p.capacity.toString() })),
      allocations,
    };
    return result;
  });

export function renderShowAlloc(s: ShowAlloc): string {
  const pools = s.pools.length === 0 ? "no CIDR: an L2 network, danm's IPAM hands out nothing" : renderTable(
    ["FAMILY", "CIDR", "POOL", "USED", "CAPACITY"],
    s.pools.map((p) => [`IPv${p.family}`, p.cidr, p.pool, String(p.used), p.capacity]),
  );
  const allocs = s.allocations.length === 0 ? "no allocations" : renderTable(
    ["ADDRESS", "POD", "INTERFACE", "NODE", "STATIC", "SINCE"],
    s.allocations.map((a) => [a.address, a.pod, a.iface, a.node, a.static ? "yes" : "", a.since]),
  );
  return `${s.network}\n\n${pools}\n\n${allocs}`;
}

// --- status --------------------------------------------------------------------------------------------------

export interface NetworkStatusRow {
  readonly kind: NetworkKind;
  readonly namespace?: string;
  readonly name: string;
  readonly type: string;
  readonly networkId: string;
  readonly vlan?: number;
  readonly vxlan?: number;
  readonly hostDevice?: string;
  readonly hostInterfaces: string;
  readonly pools: ReadonlyArray<{ family: 4 | 6; cidr: string; used: number; capacity: string }>;
}

export const status = Effect.gen(function* () {
  const networks = yield* listNetworks;
  const rows: NetworkStatusRow[] = [];
  for (const n of networks) {
    const o = n.network.spec.Options ?? {};
    const cond = n.network.status?.conditions?.find((c) => c.type === HostInterfacesReady);
    const blocks = yield* blocksOf(n.network.metadata.uid ?? "");
    rows.push({
      kind: n.kind,
      ...(n.kind !== "ClusterNetwork" && n.network.metadata.namespace
        ? { namespace: n.network.metadata.namespace }
        : {}),
      name: n.network.metadata.name ?? "",
      type: n.network.spec.NetworkType || "ipvlan",
      networkId: n.network.spec.NetworkID ?? "",
      ...(o.vlan ? { vlan: o.vlan } : {}),
      ...(o.vxlan ? { vxlan: o.vxlan } : {}),
      ...(o.host_device ? { hostDevice: o.host_device } : {}),
      hostInterfaces: cond ? `${cond.status === "True" ? "ready" : "not ready"} (${cond.message})` : "-",
      pools: poolUsage(n, blocks).map((p) => ({
        family: p.family,
        cidr: p.cidr,
        used: p.used,
        capacity: p.capacity.toString(),
      })),
    });
  }
  return rows;
});

export function renderStatus(rows: ReadonlyArray<NetworkStatusRow>): string {
  if (rows.length === 0) return "no danm networks";
  return renderTable(
    ["KIND", "NAMESPACE", "NAME", "TYPE", "NETWORKID", "VLAN/VNI", "HOST-DEVICE", "HOST-INTERFACES", "POOLS"],
    rows.map((r) => [
      r.kind,
      r.namespace ?? "",
      r.name,
      r.type,
      r.networkId,
      r.vlan ? `vlan ${r.vlan}` : r.vxlan ? `vxlan ${r.vxlan}` : "",
      r.hostDevice ?? "",
      r.hostInterfaces,
      r.pools.map((p) => `${p.cidr} ${p.used}/${p.capacity}`).join(", ") || "L2",
    ]),
  );
}

// --- leaks ---------------------------------------------------------------------------------------------------

export const leaks = (opts: { graceSeconds: number }) => checkClusterConsistency(opts);

/** Frees leaked reservations (pods gone) and stale blocks (networks gone); never touches live pods. */
export const releaseLeaks = (opts: { graceSeconds: number }) =>
  Effect.gen(function* () {
    const directory = yield* kubeOwnerDirectory;
    return yield* Effect.provide(reclaimOrphans(directory, opts), blockStoreFromKube);
  });

export function renderLeaks(r: ConsistencyReport): string {
  const sections: string[] = [];
  const section = (title: string, headers: string[], rows: string[][]) => {
    if (rows.length) sections.push(`${title} (${rows.length})\n${renderTable(headers, rows)}`);
  };
  section(
    "DUPLICATES",
    ["NETWORK", "ADDRESS", "HOLDERS"],
    r.duplicates.map((d) => [d.network, d.address, d.holders.join(", ")]),
  );
  section(
    "LEAKED RESERVATIONS",
    ["NETWORK", "ADDRESS", "POD", "REASON"],
    r.leakedReservations.map((l) => [l.network, l.address, l.pod, l.reason]),
  );
  section(
    "RESERVATIONS WITHOUT A DANMEP",
    ["NETWORK", "ADDRESS", "POD"],
    r.unrecordedReservations.map((l) => [l.network, l.address, l.pod]),
  );
  section("ORPHAN DANMEPS", ["DANMEP", "POD", "NETWORK"], r.orphanEndpoints.map((o) => [o.endpoint, o.pod, o.network]));
  section(
    "DANMEPS WITHOUT A RESERVATION",
    ["DANMEP", "NETWORK", "ADDRESS"],
    r.unreservedEndpoints.map((o) => [o.endpoint, o.network, o.address]),
  );
  section("BLOCKS OF DELETED NETWORKS", ["IPBLOCK"], r.staleBlocks.map((b) => [b]));
  section(
    "NETWORK-STATUS DISAGREEING WITH DANMEPS",
    ["POD", "PROBLEM"],
    r.statusMismatches.map((m) => [m.pod, m.problem]),
  );
  section(
    "PODS WITH DANMEPS OF SEVERAL SANDBOXES",
    ["POD", "SANDBOXES"],
    r.sandboxMismatches.map((m) => [m.pod, m.sandboxes.join(", ")]),
  );
  return sections.length ? sections.join("\n\n") : "no duplicates, no leaks";
}

export function renderReclaim(r: ReclaimReport): string {
  const lines = [
    ...r.freed.map((f) => `freed ${f}`),
    ...r.deletedBlocks.map((b) => `deleted IPBlock ${b}`),
  ];
  if (r.raced) lines.push(`${r.raced} block(s) changed meanwhile; run again to retry them`);
  return lines.length ? lines.join("\n") : "nothing to release";
}
