// What a simulation produced, and how it reads: tables for people, one JSON document (`-o json`) for scripts.
import type { NetworkStatusRow } from "../ctl/commands.ts";
import { renderTable } from "../ctl/table.ts";
import { policyRows, type SimInterfacePolicy } from "./policies.ts";

export interface SimPodInterface {
  readonly name: string;
  /** The danm network (or NAD) the interface belongs to; "" when no DanmEp names it. */
  readonly network: string;
  /** DanmNet | TenantNetwork | ClusterNetwork. */
  readonly kind: string;
  /** The kernel's link kind: ipvlan, macvlan, veth … */
  readonly type: string;
  /** Addresses with prefix. */
  readonly ips: ReadonlyArray<string>;
  readonly mac?: string;
  /** The device-plugin device behind the interface (an SR-IOV VF's PCI address). */
  readonly device?: string;
  /** Routes with a gateway ("dst via gw [table N]") and policy rules ("from … lookup N"). */
  readonly routes: ReadonlyArray<string>;
  /** The MultiNetworkPolicies that apply to this interface and what they isolate; absent when none applies. */
  readonly policy?: SimInterfacePolicy;
}

export interface SimPod {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** The Pod or workload it came from. */
  readonly owner: string;
  readonly status: "Running" | "Failed";
  readonly error?: string;
  readonly interfaces: ReadonlyArray<SimPodInterface>;
}

export interface SimOutcome {
  readonly pods: ReadonlyArray<SimPod>;
  readonly nodes: ReadonlyArray<{
    readonly name: string;
    readonly hostInterfaces: ReadonlyArray<
      { name: string; kind: string; vlan?: number; vni?: number; parent?: string; mtu?: number }
    >;
  }>;
  readonly services: ReadonlyArray<{
    readonly namespace: string;
    readonly name: string;
    readonly networks: ReadonlyArray<string>;
    readonly endpoints: ReadonlyArray<string>;
    readonly notReady: ReadonlyArray<string>;
    readonly ports: ReadonlyArray<number>;
  }>;
  /** Networks as `danmctl status` reports them (type, NetworkID, VLAN/VNI, host interface readiness, pools). */
  readonly networks: ReadonlyArray<NetworkStatusRow>;
  readonly rejected: ReadonlyArray<
    { kind: string; namespace?: string; name: string; reason: string; source: string }
  >;
  /**
   * What admission warned about objects it admitted (the webhook's AdmissionReview warnings, which kubectl prints as
   * "Warning:"): e.g. a MultiNetworkPolicy without policy-for, or naming a network that does not exist (yet).
   */
  readonly warnings?: ReadonlyArray<SimAdmissionWarning>;
  /** The MultiNetworkPolicies admitted (`namespace/name`); absent or empty: the scenario has none. */
  readonly policies?: ReadonlyArray<string>;
  /** Problems with the scenario itself (file, object, field). */
  readonly errors: ReadonlyArray<string>;
  /** Present when the run was stopped (Ctrl-C) before every pod was started: `pods` holds those that were. */
  readonly stopped?: { readonly podsPlanned: number };
}

export interface SimAdmissionWarning {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  readonly warning: string;
  /** The scenario file the object came from ("" when unknown). */
  readonly source: string;
}

const qualified = (ns: string | undefined, name: string) => (ns ? `${ns}/${name}` : name);

export function renderOutcome(o: SimOutcome): string {
  const out: string[] = [];
  const section = (title: string, body: string) => out.push(`${title}\n${body}`);
  if (o.errors.length) section("SCENARIO ERRORS", o.errors.map((e) => `  ${e}`).join("\n"));
  if (o.rejected.length) {
    section(
      "REFUSED BY ADMISSION",
      o.rejected.map((r) => `  ${r.kind} ${qualified(r.namespace, r.name)} (${r.source}):\n    ${r.reason}`).join("\n"),
    );
  }
  if (o.warnings?.length) {
    section(
      "ADMISSION WARNINGS",
      o.warnings.map((w) =>
        `  ${w.kind} ${qualified(w.namespace, w.name)}${w.source ? ` (${w.source})` : ""}:\n    ${w.warning}`
      ).join("\n"),
    );
  }
  const podRows: string[][] = [];
  for (const p of o.pods) {
    if (p.status === "Failed") {
      podRows.push([qualified(p.namespace, p.name), p.node, "-", "-", "-", "FAILED (see below)", ""]);
      continue;
    }
    p.interfaces.forEach((i, k) =>
      podRows.push([
        k === 0 ? qualified(p.namespace, p.name) : "",
        k === 0 ? p.node : "",
        i.name,
        i.network ? `${i.network}${i.kind && i.kind !== "DanmNet" ? ` (${i.kind})` : ""}` : "-",
        i.device ? `VF ${i.device}` : i.type,
        i.ips.join(", ") || "-",
        i.routes.join("; "),
      ])
    );
  }
  section(
    `PODS (${o.pods.filter((p) => p.status === "Running").length} running, ${
      o.pods.filter((p) => p.status === "Failed").length
    } failed)`,
    podRows.length
      ? renderTable(["POD", "NODE", "IFACE", "NETWORK", "TYPE", "ADDRESSES", "ROUTES"], podRows)
      : "  none",
  );
  if (o.policies?.length) {
    const rows = policyRows(o.pods);
    section(
      `NETWORK POLICIES (${o.policies.length}: ${o.policies.join(", ")})`,
      rows.length
        ? renderTable(["POD", "IFACE", "NETWORK", "POLICIES", "INGRESS", "EGRESS"], rows)
        : "  none applies to any pod interface",
    );
  }
  const failed = o.pods.filter((p) => p.status === "Failed");
  if (failed.length) {
    section(
      "FAILED PODS",
      failed.map((p) =>
        `  ${qualified(p.namespace, p.name)} on ${p.node}:\n${
          (p.error ?? "").split("\n").map((l) => `    ${l}`).join("\n")
        }`
      ).join("\n"),
    );
  }
  const hostRows = o.nodes.flatMap((n) =>
    n.hostInterfaces.length
      ? n.hostInterfaces.map((h, k) => [
        k === 0 ? n.name : "",
        h.name,
        h.kind,
        h.vlan ? `vlan ${h.vlan}` : h.vni ? `vni ${h.vni}` : "",
        h.parent ?? "",
        h.mtu ? String(h.mtu) : "",
      ])
      : [[n.name, "-", "", "", "", ""]]
  );
  section("HOST INTERFACES", renderTable(["NODE", "INTERFACE", "KIND", "ID", "PARENT", "MTU"], hostRows));
  section(
    "SERVICES",
    o.services.length
      ? renderTable(
        ["SERVICE", "NETWORKS", "ENDPOINTS", "NOT READY", "PORTS"],
        o.services.map((s) => [
          qualified(s.namespace, s.name),
          s.networks.join(", "),
          s.endpoints.join(", ") || "-",
          s.notReady.join(", ") || "-",
          s.ports.join(","),
        ]),
      )
      : "  none",
  );
  section(
    "NETWORKS AND IPAM",
    o.networks.length
      ? renderTable(
        ["NETWORK", "TYPE", "NETWORKID", "VLAN/VNI", "HOST-DEVICE", "HOST-INTERFACES", "POOLS (used/capacity)"],
        o.networks.map((n) => [
          `${n.kind} ${qualified(n.namespace, n.name)}`,
          n.type,
          n.networkId,
          n.vlan ? `vlan ${n.vlan}` : n.vxlan ? `vxlan ${n.vxlan}` : "",
          n.hostDevice ?? "",
          n.hostInterfaces,
          n.pools.map((p) => `${p.cidr} ${p.used}/${p.capacity}`).join(", ") || "L2",
        ]),
      )
      : "  none",
  );
  if (o.stopped) {
    section(
      "STOPPED",
      `  interrupted after ${o.pods.length} of ${o.stopped.podsPlanned} pods; the tables above show what was done`,
    );
  }
  return out.join("\n\n");
}
