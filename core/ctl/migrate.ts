// `danmctl migrate`: the upgrade from DANM ≤ 4.3 (group danm.k8s.io) to danm, on a live cluster.
//
// 1. Networks and TenantConfigs are copied to danm.io without DANM's allocation state (alloc, alloc6, lastIp, the
//    profiles' VNI bitmasks): danm keeps address reservations in IPBlocks and VNI claims in Leases.
// 2. The DanmEps of running pods are copied with danm's own labels (node, sandbox, pod UID), so the node agent finds
//    them as it finds its own: a DEL of a migrated pod tears its interfaces down and frees its addresses. DanmEps
//    whose pod is gone (DANM leaked them, #167) are not copied: their addresses are free.
// 3. Every address DANM's IPAM gave a running pod (inside the network's cidr/net6) is reserved in danm's IPAM for
//    that pod, sandbox and interface, so no new pod gets an address still in use. Addresses a static delegate's own
//    IPAM gave (outside cidr/net6) are not danm's to reserve. Two running pods holding one address (DANM did not
//    track static IPv6 outside its pool) cannot both be reserved: the second is reported, not guessed.
// Nothing is deleted; running it again is harmless ("exists"). With --dry-run nothing is written.
import { Effect } from "effect";
import {
  type DanmEp,
  DanmEpResource,
  isNetworkKind,
  LegacyClusterNetworkResource,
  LegacyDanmEpResource,
  LegacyDanmNetResource,
  LegacyTenantConfigResource,
  LegacyTenantNetworkResource,
  type Network,
  type NetworkKind,
  networkResources,
  TenantConfigResource,
} from "../api/danm.ts";
import { type Pod, PodResource } from "../api/k8s.ts";
import { EpLabels, labelValue, sandboxLabel } from "../cni/endpoints.ts";
import { Ipam, ipamLayer, type IpamNetwork, type Owner } from "../ipam/allocator.ts";
import { blockStoreFromKube } from "../ipam/kube.ts";
import { planFamily } from "../ipam/plan.ts";
import { contains, parseIp } from "../net/ip.ts";
import { Kube, type ResourceType } from "../ports/kube.ts";
import { renderTable } from "./table.ts";

export interface MigrationEntry {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  readonly action:
    | "created"
    | "exists"
    | "would create"
    | "skipped"
    | "reserved"
    | "would reserve"
    | "not reserved";
  readonly note?: string;
}

const legacyPairs: ReadonlyArray<readonly [ResourceType<Network>, NetworkKind]> = [
  [LegacyDanmNetResource, "DanmNet"],
  [LegacyTenantNetworkResource, "TenantNetwork"],
  [LegacyClusterNetworkResource, "ClusterNetwork"],
];

type Meta = { metadata: { name?: string; namespace?: string; labels?: { [k: string]: string } } };

const listOrNone = <A>(kube: Kube["Service"], rt: ResourceType<A>, namespace?: string) =>
  kube.list(rt, namespace === undefined ? {} : { namespace }).pipe(
    Effect.map((l) => l.items),
    // No legacy CRD installed: nothing of this kind to migrate.
    Effect.catchTag("KubeNotFound", () => Effect.succeed([] as ReadonlyArray<A>)),
  );

/** DANM's network object as danm stores it: no bitmasks, no lastIp, no status. */
function withoutAllocationState(n: Network): Network {
  const { alloc: _a, alloc6: _a6, allocation_pool, allocation_pool_v6, ...options } = n.spec.Options ?? {};
  const strip = <P extends { lastIp?: string }>(p: P | undefined) => {
    if (!p) return {};
    const { lastIp: _l, ...rest } = p;
    return rest;
  };
  const { status: _status, ...rest } = n;
  return {
    ...rest,
    spec: {
      ...n.spec,
      Options: {
        ...options,
        ...(allocation_pool ? { allocation_pool: strip(allocation_pool) } : {}),
        ...(allocation_pool_v6 ? { allocation_pool_v6: strip(allocation_pool_v6) } : {}),
      },
    },
  } as Network;
}

/** The addresses DANM recorded for an interface, as plain IPs ("10.0.0.5/24" → "10.0.0.5"); "none"/"" left out. */
const recordedAddresses = (ep: DanmEp) =>
  [ep.spec.Interface.Address, ep.spec.Interface.AddressIPv6]
    .filter((a): a is string => !!a && a !== "none" && a !== "dynamic")
    .map((a) => a.split("/")[0]);

/** The kind of network a DanmEp names (DANM's oldest DanmEps have no apiType: DanmNet). */
const endpointNetworkKind = (ep: DanmEp): NetworkKind =>
  ep.spec.apiType && isNetworkKind(ep.spec.apiType) ? ep.spec.apiType : "DanmNet";

export const migrate = (opts: { dryRun: boolean }) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const out: MigrationEntry[] = [];
    const entry = (kind: string, o: Meta, action: MigrationEntry["action"], note?: string): MigrationEntry => ({
      kind,
      ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}),
      name: o.metadata.name ?? "",
      action,
      ...(note ? { note } : {}),
    });
    /** Creates a fresh object (no uid, resourceVersion or managed fields of the legacy one). */
    const copy = <A extends Meta>(to: ResourceType<A>, kind: string, item: A, target: A) =>
      kube.create(to, target, { dryRun: opts.dryRun }).pipe(
        Effect.as(opts.dryRun ? "would create" as const : "created" as const),
        Effect.catchTag("KubeAlreadyExists", () => Effect.succeed("exists" as const)),
        Effect.map((action) => void out.push(entry(kind, item, action))),
      );
    const freshMeta = (m: Meta["metadata"], labels?: { [k: string]: string }) => ({
      name: m.name ?? "",
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.labels || labels ? { labels: { ...m.labels, ...labels } } : {}),
    });

    for (const [legacy, kind] of legacyPairs) {
      for (const n of yield* listOrNone(kube, legacy)) {
        const target = withoutAllocationState({ ...n, metadata: freshMeta(n.metadata) } as Network);
        yield* copy(networkResources[kind] as ResourceType<Network>, kind, n, target);
      }
    }
    for (const t of yield* listOrNone(kube, LegacyTenantConfigResource)) {
      yield* copy(TenantConfigResource, "TenantConfig", t, {
        ...t,
        metadata: freshMeta(t.metadata),
        ...(t.hostDevices ? { hostDevices: t.hostDevices.map(({ alloc: _alloc, ...p }) => p) } : {}),
      });
    }

    // DanmEps of running pods, with the labels danm's node agent selects its sandboxes' DanmEps by.
    const live: Array<{ ep: DanmEp; pod: Pod }> = [];
    for (const ep of yield* listOrNone(kube, LegacyDanmEpResource)) {
      const namespace = ep.metadata.namespace ?? "";
      const pod = yield* kube.get(PodResource, ep.spec.Pod, { namespace }).pipe(
        Effect.map((p): Pod | undefined => p),
        Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
      );
      const running = pod && pod.metadata.uid === ep.spec.PodUID && !["Succeeded", "Failed"].includes(
        pod.status?.phase ?? "",
      );
      if (!running) {
        out.push(entry("DanmEp", ep, "skipped", `pod ${namespace}/${ep.spec.Pod} is gone: its addresses are free`));
        continue;
      }
      const node = pod.spec.nodeName ?? ep.spec.Host ?? "";
      live.push({ ep, pod });
      yield* copy(DanmEpResource, "DanmEp", ep, {
        ...ep,
        metadata: freshMeta(ep.metadata, {
          [EpLabels.node]: labelValue(node),
          [EpLabels.sandbox]: sandboxLabel(ep.spec.CID ?? ""),
          [EpLabels.podUid]: labelValue(ep.spec.PodUID ?? ""),
        }),
      });
    }

    // The running pods' addresses, reserved for them in danm's IPAM. Where DANM handed one address to two pods, the
    // pod that has run longest keeps it (then namespace/name): the outcome must not depend on list order.
    const seniority = ({ pod }: { pod: Pod }) =>
      `${pod.metadata.creationTimestamp ?? ""} ${pod.metadata.namespace ?? ""}/${pod.metadata.name ?? ""}`;
    live.sort((a, b) => seniority(a).localeCompare(seniority(b)));
    const reserve = Effect.gen(function* () {
      const ipam = yield* Ipam;
      for (const { ep, pod } of live) {
        const namespace = ep.metadata.namespace ?? "";
        const kind = endpointNetworkKind(ep);
        const netNamespace = kind === "ClusterNetwork" ? undefined : namespace;
        // The danm.io copy (its uid keys the IPBlocks); in a dry run only the legacy object exists.
        const network = yield* kube.get(
          (opts.dryRun ? legacyPairs.find(([, k]) => k === kind)![0] : networkResources[kind]) as ResourceType<
            Network
          >,
          ep.spec.NetworkName,
          netNamespace === undefined ? {} : { namespace: netNamespace },
        ).pipe(
          Effect.map((n): Network | undefined => n),
          Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
        );
        const what = `${namespace}/${ep.spec.Pod} ${ep.spec.Interface.Name}`;
        const addresses = recordedAddresses(ep);
        if (addresses.length === 0) continue;
        const row = (action: MigrationEntry["action"], note: string) =>
          out.push({ kind: "Reservation", name: `${what} ${addresses.join(",")}`, action, note });
        if (!network) {
          row("not reserved", `${kind} ${ep.spec.NetworkName} does not exist`);
          continue;
        }
        const options = network.spec.Options ?? {};
        const ours = addresses.filter((a) => {
          const ip = parseIp(a);
          const plan = ip && planFamily(options, ip.family).plan;
          return ip !== undefined && plan !== undefined && contains(plan.network, ip);
        });
        if (ours.length === 0) {
          row("skipped", "outside the network's cidr/net6: the delegate's own IPAM gave it");
          continue;
        }
        const label = `${kind} ${netNamespace ? `${netNamespace}/` : ""}${ep.spec.NetworkName}`;
        if (opts.dryRun) {
          row("would reserve", `${ours.join(",")} on ${label}`);
          continue;
        }
        const ipamNetwork: IpamNetwork = {
          ref: {
            kind,
            ...(netNamespace === undefined ? {} : { namespace: netNamespace }),
            name: ep.spec.NetworkName,
            uid: network.metadata.uid ?? "",
          },
          options,
        };
        const owner: Owner = {
          namespace,
          pod: ep.spec.Pod,
          podUid: ep.spec.PodUID ?? "",
          sandbox: ep.spec.CID ?? "",
          iface: ep.spec.Interface.Name,
          node: pod.spec.nodeName ?? ep.spec.Host ?? "",
        };
        const v4 = ours.find((a) => !a.includes(":")), v6 = ours.find((a) => a.includes(":"));
        const result = yield* Effect.result(ipam.allocate(ipamNetwork, owner, v4, v6));
        if (result._tag === "Success") row("reserved", `${ours.join(",")} on ${label}`);
        else row("not reserved", result.failure.message);
      }
    });
    yield* Effect.scoped(reserve.pipe(Effect.provide(ipamLayer()), Effect.provide(blockStoreFromKube)));
    return out;
  });

/** True when every running pod's address is reserved (or would be). */
export const migrationComplete = (entries: ReadonlyArray<MigrationEntry>): boolean =>
  entries.every((e) => e.action !== "not reserved");

export function renderMigration(entries: ReadonlyArray<MigrationEntry>): string {
  if (entries.length === 0) return "no danm.k8s.io objects found";
  return renderTable(
    ["KIND", "NAMESPACE", "NAME", "ACTION", "NOTE"],
    entries.map((e) => [e.kind, e.namespace ?? "", e.name, e.action, e.note ?? ""]),
  );
}
