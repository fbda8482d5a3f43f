// `danmctl dry-run`: which interfaces, addresses and routes a pod manifest would get, from the live networks and
// reservations, without changing anything. Network selection and naming are the CNI's own (core/podnetworks,
// core/cni/plan.ts); dynamic addresses are predictions (the lowest free one now — another pod may take it first).
import { Effect, Schema } from "effect";
import { layerKubeNetworkDirectory, resolvePodAttachments } from "../podnetworks/selection.ts";
import type { NamingScheme } from "../podnetworks/naming.ts";
import { Pod } from "../api/k8s.ts";
import { planAttachment } from "../cni/plan.ts";
import { specOf } from "../cni/backends/kinds.ts";
import { parseAddressRequest } from "../ipam/allocator.ts";
import { InvalidAddressRequest } from "../ipam/errors.ts";
import { blockIndexOf, lowestFree, offsetInBlock, planFamily, poolBlockRange } from "../ipam/plan.ts";
import { contains, formatIp, formatWithPrefix } from "../net/ip.ts";
import type { Family } from "../net/ip.ts";
import { blocksOf } from "./networks.ts";
import { renderTable } from "./table.ts";

export class DryRunError extends Schema.TaggedError<DryRunError>()("DryRunError", {
  reason: Schema.String,
}) {
  override get message() {
    return this.reason;
  }
}

export interface DryRunInterface {
  readonly name: string;
  readonly network: string;
  /** ipvlan and macvlan (built in), sriov (generated delegate config), a static delegate type, or a NAD. */
  readonly backend: string;
  /** The host device a built-in or generated attachment hangs off. */
  readonly parent?: string;
  readonly addresses: ReadonlyArray<string>;
  readonly routes: ReadonlyArray<string>;
  readonly notes: ReadonlyArray<string>;
}

export interface DryRun {
  readonly pod: string;
  readonly source: "danm" | "npwg" | "default";
  readonly interfaces: ReadonlyArray<DryRunInterface>;
  readonly warnings: ReadonlyArray<string>;
}

const workloadKinds = new Set(["Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job"]);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A Pod, or the pod template of a workload (with the workload's namespace). */
function podOf(manifest: unknown): unknown {
  if (!isObject(manifest) || !workloadKinds.has(String(manifest.kind))) return manifest;
  const spec = isObject(manifest.spec) ? manifest.spec : {};
  const template = isObject(spec.template) ? spec.template : {};
  const meta = isObject(manifest.metadata) ? manifest.metadata : {};
  const tmeta = isObject(template.metadata) ? template.metadata : {};
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { ...tmeta, name: `${meta.name ?? "pod"}-<n>`, namespace: meta.namespace },
    spec: template.spec ?? {},
  };
}

export const dryRun = (manifest: unknown, opts: { namespace?: string; namingScheme?: NamingScheme } = {}) =>
  Effect.gen(function* () {
    const pod = yield* Schema.decodeUnknownEffect(Pod)(podOf(manifest)).pipe(
      Effect.mapError((e) =>
        new DryRunError({ reason: `not a Pod (or a workload with a pod template): ${e.message}` })
      ),
    );
    const namespace = opts.namespace ?? pod.metadata.namespace ?? "default";
    const podName = `${namespace}/${pod.metadata.name ?? pod.metadata.generateName ?? "<pod>"}`;
    const attachments = yield* resolvePodAttachments(
      { namespace, ...(pod.metadata.annotations ? { annotations: pod.metadata.annotations } : {}) },
      opts.namingScheme ?? "",
    ).pipe(
      Effect.provide(layerKubeNetworkDirectory),
      Effect.mapError((e) => new DryRunError({ reason: `pod ${podName}: ${e.message}` })),
    );
    // Addresses predicted for earlier interfaces of this pod, per network and family, so that two interfaces on
    // one network are not both promised the same address.
    const promised = new Map<string, Set<bigint>>();
    const interfaces: DryRunInterface[] = [];
    for (const a of attachments.attachments) {
      const p = planAttachment(a, namespace);
      const notes: string[] = [];
      const addresses: string[] = [];
      if (p.ipam) {
        const blocks = yield* blocksOf(p.ipam.ref.uid).pipe(
          Effect.mapError((e) => new DryRunError({ reason: `reading the reservations of ${p.label}: ${e.message}` })),
        );
        for (const [field, family] of [["ip", 4], ["ip6", 6]] as const) {
          const request = parseAddressRequest(p.label, field, field === "ip" ? p.ip : p.ip6);
          if (request === undefined) continue;
          if (request === "none") {
            addresses.push("none");
            continue;
          }
          if (request instanceof InvalidAddressRequest) {
            notes.push(request.message);
            continue;
          }
          const plan = planFamily(p.ipam.options, family as Family).plan;
          if (!plan) {
            notes.push(`${field}: the network has no ${family === 4 ? "cidr" : "net6"}: nothing can be allocated`);
            continue;
          }
          const fam = family === 4 ? "IPv4" : "IPv6";
          const taken = (index: bigint) => {
            const b = blocks.find((x) =>
              x.spec.family === fam && x.metadata.name?.endsWith(`-${family}-${index.toString(16)}`)
            );
            const set = new Set(Object.keys(b?.spec.reservations ?? {}).map(Number));
            for (const v of promised.get(`${p.label}/${family}`) ?? []) {
              if (blockIndexOf(plan, v) === index) set.add(offsetInBlock(plan, v));
            }
            return { set, holder: (off: number) => b?.spec.reservations[String(off)]?.pod };
          };
          let value: bigint | undefined;
          if (request.kind === "static") {
            const index = blockIndexOf(plan, request.ip.value), off = offsetInBlock(plan, request.ip.value);
            const t = taken(index);
            if (!contains(plan.network, request.ip)) notes.push(`${formatIp(request.ip)} is outside the network`);
            else if (plan.reserved.has(request.ip.value)) {
              notes.push(`${formatIp(request.ip)} is reserved (network, broadcast or gateway)`);
            } else if (t.set.has(off)) {
              notes.push(`${formatIp(request.ip)} is in use${t.holder(off) ? ` by ${t.holder(off)}` : ""}`);
            } else value = request.ip.value;
          } else {
            const { first, last } = poolBlockRange(plan);
            for (let i = first; i <= last && value === undefined; i++) value = lowestFree(plan, i, taken(i).set);
            if (value === undefined) notes.push(`${field}: the pool is exhausted`);
            else notes.push(`${field}: dynamic — predicted, another pod may take it first`);
          }
          if (value !== undefined) {
            const key = `${p.label}/${family}`;
            promised.set(key, new Set([...(promised.get(key) ?? []), value]));
            addresses.push(formatWithPrefix({ family, value }, plan.network.prefix));
          }
        }
      } else {
        notes.push("addresses come from the delegate's own IPAM");
      }
      const hasV4 = addresses.some((x) => x.includes(".")), hasV6 = addresses.some((x) => x.includes(":"));
      const routes = [
        ...(hasV4 ? Object.entries(p.routes).map(([d, g]) => `${d} via ${g}`) : []),
        ...(hasV6 ? Object.entries(p.routes6).map(([d, g]) => `${d} via ${g}`) : []),
      ];
      if (p.rtTable !== undefined) {
        routes.push(...Object.entries(p.proutes).map(([d, g]) => `${d} via ${g} table ${p.rtTable}`));
        routes.push(...Object.entries(p.proutes6).map(([d, g]) => `${d} via ${g} table ${p.rtTable}`));
      } else if (Object.keys(p.proutes).length + Object.keys(p.proutes6).length > 0) {
        notes.push("proutes are ignored: the network has no rt_tables");
      }
      interfaces.push({
        name: p.ifName,
        network: p.label,
        ...specOf(p.backend).describe(p.backend),
        addresses,
        routes,
        notes,
      });
    }
    return { pod: podName, source: attachments.source, interfaces, warnings: attachments.warnings } satisfies DryRun;
  });

export function renderDryRun(d: DryRun): string {
  const rows = d.interfaces.map((i) => [
    i.name,
    i.network,
    i.backend,
    i.parent ?? "",
    i.addresses.join(", ") || "-",
    i.routes.join("; "),
  ]);
  const notes = d.interfaces.flatMap((i) => i.notes.map((n) => `  ${i.name}: ${n}`));
  return [
    `${d.pod} (networks from ${
      d.source === "danm"
        ? "danm.io/interfaces"
        : d.source === "npwg"
        ? "k8s.v1.cni.cncf.io/networks"
        : "the default network"
    })`,
    renderTable(["IFACE", "NETWORK", "BACKEND", "PARENT", "ADDRESSES", "ROUTES"], rows),
    ...(notes.length ? ["", "notes:", ...notes] : []),
    ...(d.warnings.length ? ["", "warnings:", ...d.warnings.map((w) => `  ${w}`)] : []),
  ].join("\n");
}
