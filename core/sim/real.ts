// The report of `deno task sim --real`: what a real cluster shows — each pod's links, the DanmEps, the Endpoints
// svcwatcher made, the nodes' links — read into the same SimOutcome as the in-memory run, plus pings over every
// secondary network between the pods on it.
import type { DanmEp } from "../api/danm.ts";
import type { Endpoints } from "../api/k8s.ts";
import { renderTable } from "../ctl/table.ts";
import type { SimOutcome, SimPod } from "./report.ts";

/** A link in a pod's network namespace as the node reports it. */
export interface RealPodLink {
  readonly name: string;
  /** Kernel link kind (veth, macvlan …); "" when unknown. */
  readonly kind: string;
  /** Global addresses with prefix length. */
  readonly addresses: ReadonlyArray<string>;
}

/** Where a scenario pod ended up on the real cluster. */
export interface RealPodState {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** Running and Ready in time, with a sandbox. */
  readonly running: boolean;
}

export interface Ping {
  readonly network: string;
  readonly from: string;
  readonly to: string;
  readonly address: string;
  readonly ok: boolean;
}

export type RealOutcome = SimOutcome & { readonly pings: ReadonlyArray<Ping> };

/** A running pod's links (eth0 first), each labelled with the network its DanmEp names. */
export function realPod(p: RealPodState, links: ReadonlyArray<RealPodLink>, eps: ReadonlyArray<DanmEp>): SimPod {
  if (!p.running) {
    return { ...p, owner: "", status: "Failed", error: "not Running/Ready in time", interfaces: [] };
  }
  return {
    namespace: p.namespace,
    name: p.name,
    node: p.node,
    owner: "",
    status: "Running",
    interfaces: [...links].sort((a, b) =>
      a.name === "eth0" ? -1 : b.name === "eth0" ? 1 : a.name.localeCompare(b.name, "en")
    ).map((l) => {
      const ep = eps.find((e) =>
        e.metadata.namespace === p.namespace && e.spec.Pod === p.name && e.spec.Interface.Name === l.name
      );
      return {
        name: l.name,
        network: ep?.spec.NetworkName ?? "",
        kind: ep?.spec.apiType || (ep ? "DanmNet" : ""),
        type: l.kind,
        ips: [...l.addresses],
        routes: [],
      };
    }),
  };
}

/** A ping to try: from one running pod to another's address on the same secondary network (same family). */
export interface PingProbe {
  readonly network: string;
  readonly from: SimPod;
  readonly to: SimPod;
  readonly address: string;
}

/** Every running pod to every other one on each secondary network (eth0 and unlabelled links left out). */
export function pingProbes(pods: ReadonlyArray<SimPod>): PingProbe[] {
  const byNetwork = new Map<string, Array<{ pod: SimPod; address: string }>>();
  for (const pod of pods.filter((p) => p.status === "Running")) {
    for (const i of pod.interfaces) {
      if (i.name === "eth0" || !i.network) continue;
      const key = `${i.kind} ${i.network}`;
      for (const a of i.ips) byNetwork.set(key, [...(byNetwork.get(key) ?? []), { pod, address: a.split("/")[0] }]);
    }
  }
  const probes: PingProbe[] = [];
  for (const [network, members] of byNetwork) {
    for (const src of members) {
      for (const dst of members) {
        if (src.pod === dst.pod || src.address.includes(":") !== dst.address.includes(":")) continue;
        probes.push({ network, from: src.pod, to: dst.pod, address: dst.address });
      }
    }
  }
  return probes;
}

export const pingOf = (probe: PingProbe, ok: boolean): Ping => ({
  network: probe.network,
  from: `${probe.from.namespace}/${probe.from.name}`,
  to: `${probe.to.namespace}/${probe.to.name}`,
  address: probe.address,
  ok,
});

/** The Services svcwatcher manages, from their Endpoints. */
export function managedServices(endpoints: ReadonlyArray<Endpoints>): SimOutcome["services"] {
  return endpoints.filter((e) => e.metadata.labels?.["endpoints.danm.io/managed-by"]).map((e) => ({
    namespace: e.metadata.namespace ?? "",
    name: e.metadata.name ?? "",
    networks: [],
    endpoints: (e.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => a.ip)),
    notReady: (e.subsets ?? []).flatMap((s) => (s.notReadyAddresses ?? []).map((a) => a.ip)),
    ports: (e.subsets ?? []).flatMap((s) => (s.ports ?? []).map((p) => p.port)),
  }));
}

/** A node's danm host interfaces among its links, by name: VXLAN `vx_…`, VLAN `<parent>.<id>`. */
export const realHostInterfaces = (links: ReadonlyArray<string>) =>
  links.filter((l) => /^vx_|\.\d+$/.test(l)).map((name) => ({
    name,
    kind: name.startsWith("vx_") ? "vxlan" : "vlan",
  }));

export function renderPings(pings: ReadonlyArray<Ping>): string {
  const answered = pings.filter((p) => p.ok).length;
  return `PINGS OVER SECONDARY NETWORKS (${answered}/${pings.length} answered)\n` +
    renderTable(
      ["NETWORK", "FROM", "TO", "ADDRESS", "ANSWER"],
      pings.map((p) => [p.network, p.from, p.to, p.address, p.ok ? "yes" : "NO"]),
    );
}
