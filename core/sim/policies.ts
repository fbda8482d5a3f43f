// The sim's MultiNetworkPolicy view: per pod and interface, the policies that apply and what each direction is
// (isolated by which policies, allowing how many flows, or open) — read from the engine's compiled rules, the same
// ones the node agent renders into nftables, so the report can't disagree with enforcement.
import { compilePods } from "../netpol/compile.ts";
import type { Direction, PolicyWorld } from "../netpol/model.ts";
import { podKey } from "../netpol/model.ts";
import { selectingPolicies } from "../netpol/select.ts";
import type { SimPod } from "./report.ts";

/** One isolated direction of an interface. */
export interface SimIsolation {
  /** The policies that isolate it (sorted). */
  readonly by: ReadonlyArray<string>;
  /** How many allowed flows (peer set × protocol × ports) its rules compile to; 0 = everything is dropped. */
  readonly allowedFlows: number;
}

/** The policies of one pod interface. Absent directions are open. */
export interface SimInterfacePolicy {
  /** Every MultiNetworkPolicy that selects the pod for this interface's network (sorted). */
  readonly policies: ReadonlyArray<string>;
  /** The pod's primary interface (eth0): named by those policies but never policed (core/netpol/select.ts). */
  readonly primary?: true;
  readonly ingress?: SimIsolation;
  readonly egress?: SimIsolation;
}

const isolation = (d: Direction | undefined): SimIsolation | undefined =>
  d === undefined ? undefined : { by: d.policies, allowedFlows: d.flows.length };

/** The pods with each policed interface's `policy` filled in (pods and interfaces without any keep none). */
export function withPolicies(world: PolicyWorld, pods: ReadonlyArray<SimPod>): SimPod[] {
  const keys = pods.filter((p) => p.status === "Running").map((p) => podKey(p.namespace, p.name));
  const rules = compilePods(world, keys);
  return pods.map((p) => {
    const key = podKey(p.namespace, p.name);
    const applied = selectingPolicies(world, key);
    if (applied.length === 0) return p;
    const compiled = rules.get(key)?.interfaces ?? [];
    const interfaces = p.interfaces.map((i) => {
      const here = applied.find((a) => a.attachment.ifName === i.name);
      if (here === undefined) return i;
      const r = compiled.find((c) => c.ifName === i.name);
      const ingress = isolation(r?.ingress), egress = isolation(r?.egress);
      const policy: SimInterfacePolicy = {
        policies: here.policies.map(([k]) => k),
        ...(here.primary ? { primary: true as const } : {}),
        ...(ingress ? { ingress } : {}),
        ...(egress ? { egress } : {}),
      };
      return { ...i, policy };
    });
    return { ...p, interfaces };
  });
}

const describeDirection = (d: SimIsolation | undefined) =>
  d === undefined
    ? "open"
    : `isolated, ${
      d.allowedFlows === 0 ? "all denied" : `${d.allowedFlows} allowed flow${d.allowedFlows === 1 ? "" : "s"}`
    }`;

/** The NETWORK POLICIES table's rows: one per policed interface. */
export function policyRows(pods: ReadonlyArray<SimPod>): string[][] {
  const rows: string[][] = [];
  for (const p of pods) {
    let first = true;
    for (const i of p.interfaces) {
      if (i.policy === undefined) continue;
      rows.push([
        first ? `${p.namespace}/${p.name}` : "",
        i.name,
        i.network || "-",
        i.policy.policies.join(", "),
        ...(i.policy.primary
          ? ["not policed (primary interface)", "not policed (primary interface)"]
          : [describeDirection(i.policy.ingress), describeDirection(i.policy.egress)]),
      ]);
      first = false;
    }
  }
  return rows;
}
