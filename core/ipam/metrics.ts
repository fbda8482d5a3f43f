// The IPAM's metrics (names and labels are what dashboards, alert rules and tests rely on: k8s/monitoring), kept in
// the registry of the node daemon that hosts the allocator and the reclaimer.
import type { Registry } from "../observability/metrics.ts";

export function ipamMetrics(r: Registry) {
  return {
    allocationDuration: r.histogram(
      "danm_ipam_allocation_duration_seconds",
      "Time to reserve one interface's addresses on a network (every family it asks for), from the request to " +
        "the written IPBlock, by result (success or the error: PoolExhausted, AddressInUse, TooMuchContention …).",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
    allocations: r.counter("danm_ipam_allocations_total", "Addresses reserved, by family (4, 6)."),
    releases: r.counter("danm_ipam_releases_total", "Addresses released, by family (4, 6)."),
    blockWrites: r.counter(
      "danm_ipam_block_writes_total",
      "IPBlock writes (create, update or delete) that succeeded; each commits a batch of concurrent requests.",
    ),
    conflicts: r.counter(
      "danm_ipam_block_conflicts_total",
      "IPBlock writes that lost a compare-and-swap race and were retried, by kind (conflict: another writer " +
        "changed the block; exists: another node created it first).",
    ),
    poolCapacity: r.gauge(
      "danm_ipam_pool_capacity_addresses",
      "Addresses danm's IPAM can hand out from a network's pool (the pool minus reserved addresses), by network " +
        "and family, for the networks this node allocates on.",
    ),
    poolAllocated: r.gauge(
      "danm_ipam_pool_allocated_addresses",
      "Addresses of a network reserved for pods of this node, by network and family; summed over nodes, the " +
        "network's allocated addresses.",
    ),
    reclaimRuns: r.counter(
      "danm_ipam_reclaim_runs_total",
      "Reclaim passes over this node's reservations, by result (success, error).",
    ),
    reclaimed: r.counter(
      "danm_ipam_reclaimed_total",
      "What the reclaimer freed: reservations whose pod or network is gone (kind=reservation), empty blocks " +
        "(kind=block).",
    ),
  };
}
export type IpamMetrics = ReturnType<typeof ipamMetrics>;

/** The labels of a network on IPAM and CNI series. */
export const networkLabels = (ref: { kind: string; namespace?: string; name: string }) => ({
  network_kind: ref.kind,
  network_namespace: ref.namespace ?? "",
  network: ref.name,
});
