// The chaos run's consistency check: the API state through danm's own checker (core/ipam/consistency.ts, the one
// behind `danmctl leaks`), and the kernel facts of every node and pod, which only the harness can see:
//
//   - no pod network namespace without a live pod whose sandbox it is, and none missing for a running pod;
//   - no host veth on the bridge of a node that no live pod's interface pairs with;
//   - no sandbox record on a node without the live sandbox it describes;
//   - each running pod has exactly the interfaces its DanmEps name, with exactly their addresses, and no address is
//     held by two pods.
// Every violation carries its evidence.
import { Schema } from "effect";
import { type DanmEp, DanmEpResource } from "../../core/api/danm.ts";
import { type Pod, PodResource } from "../../core/api/k8s.ts";
import { SandboxRecord } from "../../core/cni/state.ts";
import { checkClusterConsistency, type ConsistencyReport } from "../../core/ipam/consistency.ts";
import { run } from "../harness/proc.ts";
import type { Stack } from "../harness/stack.ts";
import { BridgeName, Namespace, podInterfaces } from "./scenario.ts";

export const ViolationKinds = [
  "duplicates",
  "leaked_reservations",
  "stray_links",
  "stray_netns",
  "orphan_danmeps",
  "stray_records",
  "mismatches",
  "pods_not_running",
] as const;
export type ViolationKind = typeof ViolationKinds[number];

export interface Violation {
  readonly kind: ViolationKind;
  readonly evidence: string;
}

const IpLinks = Schema.Array(Schema.Struct({
  ifindex: Schema.Number,
  ifname: Schema.String,
  master: Schema.optionalKey(Schema.String),
  link_index: Schema.optionalKey(Schema.Number),
  linkinfo: Schema.optionalKey(Schema.Struct({ info_kind: Schema.optionalKey(Schema.String) })),
  addr_info: Schema.optionalKey(Schema.Array(Schema.Struct({
    local: Schema.String,
    prefixlen: Schema.Number,
    scope: Schema.optionalKey(Schema.String),
  }))),
}));
type IpLinks = typeof IpLinks.Type;
const decodeLinks = Schema.decodeUnknownSync(IpLinks);
const decodeRecord = Schema.decodeUnknownSync(SandboxRecord);

async function ipJson(args: ReadonlyArray<string>): Promise<IpLinks> {
  const raw = await run(["ip", "-d", "-json", ...args]);
  return decodeLinks(raw.trim() ? JSON.parse(raw) : []);
}

const bare = (a: string | undefined) => (a && a !== "none" && a !== "dynamic" ? a.split("/")[0] : undefined);
const isRunning = (p: Pod) =>
  p.status?.phase === "Running" && !p.metadata.deletionTimestamp &&
  (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");

/** The API half: danm's checker, restricted to the chaos namespace's networks. */
function apiViolations(r: ConsistencyReport): Violation[] {
  const ours = (network: string) => network.includes(` ${Namespace}/`);
  const out: Violation[] = [];
  for (const d of r.duplicates.filter((x) => ours(x.network))) {
    out.push({ kind: "duplicates", evidence: `${d.network} ${d.address} held by ${d.holders.join(", ")}` });
  }
  for (const l of r.leakedReservations.filter((x) => ours(x.network))) {
    out.push({
      kind: "leaked_reservations",
      evidence: `${l.network} ${l.address} reserved for ${l.pod} (${l.reason}) in IPBlock ${l.block}`,
    });
  }
  for (const l of r.unrecordedReservations.filter((x) => ours(x.network))) {
    out.push({
      kind: "leaked_reservations",
      evidence: `${l.network} ${l.address} reserved for live ${l.pod} but no DanmEp records it (IPBlock ${l.block})`,
    });
  }
  for (const o of r.orphanEndpoints.filter((x) => ours(x.network))) {
    out.push({ kind: "orphan_danmeps", evidence: `DanmEp ${o.endpoint} of ${o.pod} on ${o.network}: pod gone` });
  }
  for (const u of r.unreservedEndpoints.filter((x) => ours(x.network))) {
    out.push({ kind: "mismatches", evidence: `DanmEp ${u.endpoint} has ${u.address} on ${u.network}, unreserved` });
  }
  for (const m of r.statusMismatches.filter((x) => x.pod.startsWith(`${Namespace}/`))) {
    out.push({ kind: "mismatches", evidence: `network-status of ${m.pod}: ${m.problem}` });
  }
  for (const m of r.sandboxMismatches.filter((x) => x.pod.startsWith(`${Namespace}/`))) {
    out.push({
      kind: "orphan_danmeps",
      evidence: `${m.pod} has DanmEps of ${m.sandboxes.length} sandboxes: ${m.sandboxes.join(", ")}`,
    });
  }
  return out;
}

export interface CheckOptions {
  /** Reservations and records younger than this are in-flight work, not leaks. */
  readonly graceSeconds: number;
}

/** Every violation in the stack now. */
export async function checkStack(stack: Stack, opts: CheckOptions): Promise<Violation[]> {
  const [report, podList, eps] = await Promise.all([
    stack.kubeRun(checkClusterConsistency({ graceSeconds: opts.graceSeconds })),
    stack.kubeRun(stack.kube.list(PodResource, { namespace: Namespace })),
    stack.kubeRun(stack.kube.list(DanmEpResource, { namespace: Namespace })),
  ]);
  const out = apiViolations(report);
  const pods = podList.items;
  const liveByKey = new Map(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));

  // Sandboxes the fake kubelets hold for pods that still exist: the only namespaces, records and veths allowed.
  const live = stack.sandboxes().filter((s) => !s.removed && liveByKey.has(`${s.namespace}/${s.name}`));
  const liveNetns = new Set(live.map((s) => s.netns));
  const liveIds = new Set(live.map((s) => s.containerId));

  for (const p of pods) {
    if (!isRunning(p)) {
      const phase = p.metadata.deletionTimestamp ? "terminating" : p.status?.phase ?? "no status";
      out.push({ kind: "pods_not_running", evidence: `${p.metadata.namespace}/${p.metadata.name} (${phase})` });
    }
  }

  // Namespaces.
  const netnsNames = (await run(["ip", "netns", "list"])).split("\n").map((l) => l.split(" ")[0]).filter((n) =>
    n.startsWith("fl-")
  );
  for (const n of netnsNames) {
    if (!liveNetns.has(n)) {
      const who = stack.sandboxes().find((s) => s.netns === n);
      out.push({
        kind: "stray_netns",
        evidence: `${n}${who ? ` (sandbox ${who.containerId.slice(0, 12)} of ${who.namespace}/${who.name})` : ""}`,
      });
    }
  }

  // Running pods: interfaces and addresses in the kernel against their DanmEps.
  const epsByPod = new Map<string, DanmEp[]>();
  for (const e of eps.items) {
    const k = `${e.metadata.namespace}/${e.spec.Pod}`;
    epsByPod.set(k, [...(epsByPod.get(k) ?? []), e]);
  }
  const holders = new Map<string, string[]>();
  /** Host-side ifindex of each live pod's bridge veth, per node. */
  const pairedVeths = new Map<string, Set<number>>();
  // Every live sandbox's bridge veth pairs with a host-side one (whether or not its pod made it to Running).
  for (const sb of live) {
    if (!netnsNames.includes(sb.netns)) continue;
    for (const l of await ipJson(["-n", sb.netns, "link", "show"]).catch(() => [] as IpLinks)) {
      if (l.linkinfo?.info_kind === "veth" && l.link_index !== undefined) {
        const set = pairedVeths.get(sb.node) ?? new Set<number>();
        pairedVeths.set(sb.node, set.add(l.link_index));
      }
    }
  }
  for (const p of pods.filter(isRunning)) {
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    const sb = stack.sandbox(p.metadata.namespace ?? "", p.metadata.name ?? "");
    if (!sb) {
      out.push({ kind: "mismatches", evidence: `${key} is Running but its kubelet reports no sandbox` });
      continue;
    }
    if (!netnsNames.includes(sb.netns)) {
      out.push({ kind: "mismatches", evidence: `${key} is Running but its namespace ${sb.netns} is gone` });
      continue;
    }
    const links = (await ipJson(["-n", sb.netns, "addr", "show"]).catch(() => [] as IpLinks)).filter((l) =>
      l.ifname !== "lo"
    );
    const mine = (epsByPod.get(key) ?? []).filter((e) => e.spec.PodUID === p.metadata.uid);
    const kernelNames = links.map((l) => l.ifname).sort();
    if (kernelNames.join() !== [...podInterfaces].sort().join()) {
      out.push({ kind: "mismatches", evidence: `${key}: interfaces ${kernelNames.join(",")} in the kernel` });
    }
    for (const l of links) {
      const addrs = (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => a.local).sort();
      for (const a of addrs) holders.set(a, [...(holders.get(a) ?? []), `${key}/${l.ifname}`]);
      const ep = mine.find((e) => e.spec.Interface.Name === l.ifname);
      if (!ep) {
        out.push({ kind: "mismatches", evidence: `${key}: ${l.ifname} (${addrs.join(",")}) has no DanmEp` });
        continue;
      }
      if (ep.spec.CID !== sb.containerId) {
        out.push({
          kind: "mismatches",
          evidence: `${key}: DanmEp ${ep.metadata.name} of ${l.ifname} names sandbox ${ep.spec.CID?.slice(0, 12)}, ` +
            `the pod's is ${sb.containerId.slice(0, 12)}`,
        });
      }
      const want = [bare(ep.spec.Interface.Address), bare(ep.spec.Interface.AddressIPv6)].filter((a) => a !== undefined)
        .sort();
      if (want.join() !== addrs.join()) {
        out.push({
          kind: "mismatches",
          evidence: `${key}: ${l.ifname} has ${addrs.join(",") || "no address"} in the kernel, ` +
            `its DanmEp ${ep.metadata.name} says ${want.join(",") || "none"}`,
        });
      }
    }
    for (const e of mine) {
      if (!links.some((l) => l.ifname === e.spec.Interface.Name)) {
        out.push({
          kind: "mismatches",
          evidence: `${key}: DanmEp ${e.metadata.name} names ${e.spec.Interface.Name}, which the kernel lacks`,
        });
      }
    }
  }
  for (const [address, h] of holders) {
    if (h.length > 1) out.push({ kind: "duplicates", evidence: `${address} configured on ${h.join(" and ")}` });
  }

  // Nodes: bridge veths no live pod pairs with, sandbox records without a live sandbox.
  for (const n of stack.nodes) {
    const links = await ipJson(["-n", n.netns, "link", "show"]).catch(() => [] as IpLinks);
    const paired = pairedVeths.get(n.name) ?? new Set<number>();
    for (const l of links) {
      // bup*: the node's uplink into the bridge (the harness's), not a pod's.
      if (
        l.linkinfo?.info_kind === "veth" && l.master === BridgeName && !l.ifname.startsWith("bup") &&
        !paired.has(l.ifindex)
      ) {
        out.push({ kind: "stray_links", evidence: `${n.name}: ${l.ifname} (ifindex ${l.ifindex}) on ${BridgeName}` });
      }
    }
    const dir = `${stack.dir}/${n.name}/sandboxes`;
    const cutoff = Date.now() - opts.graceSeconds * 1000;
    const files = await Array.fromAsync(Deno.readDir(dir)).catch(() => [] as Deno.DirEntry[]);
    for (const f of files) {
      if (!f.isFile || !f.name.endsWith(".json")) continue;
      const id = f.name.slice(0, -5);
      if (liveIds.has(id)) continue;
      const st = await Deno.stat(`${dir}/${f.name}`).catch(() => undefined);
      if (!st || (st.mtime?.getTime() ?? 0) > cutoff) continue;
      const record = await Deno.readTextFile(`${dir}/${f.name}`).then((t) => decodeRecord(JSON.parse(t))).catch(
        () => undefined,
      );
      out.push({
        kind: "stray_records",
        evidence: `${n.name}: record ${id.slice(0, 12)} (${record?.phase ?? "unreadable"}) of ${
          record ? `${record.pod.namespace}/${record.pod.name}` : "?"
        }`,
      });
    }
  }
  return out;
}

export const countByKind = (vs: ReadonlyArray<Violation>): Record<ViolationKind, number> =>
  Object.fromEntries(ViolationKinds.map((k) => [k, vs.filter((v) => v.kind === k).length])) as Record<
    ViolationKind,
    number
  >;
