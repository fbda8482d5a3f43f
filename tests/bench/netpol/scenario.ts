// bench:netpol's convergence scenario: pods spread over namespaces and nodes, one danm ClusterNetwork interface each
// (recorded in a DanmEp that names the pod's node and netns, as the CNI ADD writes it), and MultiNetworkPolicies
// with the selectors real ones use — podSelector, namespaceSelector, both, ipBlock with except, named ports, port
// ranges, ingress and egress — so that each pod has a few policies and each policy a few hundred peers.
// Deterministic: the same sizes give the same objects.
import type { DanmEp } from "../../../core/api/danm.ts";
import type { Namespace, Pod } from "../../../core/api/k8s.ts";
import { type MultiNetworkPolicy, PolicyForAnnotation } from "../../../core/api/netpol.ts";

export const network = "netpolbench";
const teams = ["red", "green", "blue"];

export interface ScenarioSize {
  readonly pods: number;
  readonly policies: number;
  readonly nodes: number;
  readonly namespaces: number;
  readonly apps: number;
  /** Prefix of the pods' netns names (`<prefix>-pod-<i>`), under /run/netns. */
  readonly prefix: string;
}

export const namespaceName = (n: number) => `netpolbench-${n}`;

export function namespaces(size: ScenarioSize): Namespace[] {
  return Array.from({ length: size.namespaces }, (_, n) => ({
    metadata: { name: namespaceName(n), labels: { team: teams[n % teams.length], bench: "netpol" } },
  }));
}

export interface BenchPod {
  readonly index: number;
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly netns: string;
  readonly v4: string;
  readonly v6?: string;
  labels: Record<string, string>;
}

export function benchPod(size: ScenarioSize, i: number): BenchPod {
  return {
    index: i,
    namespace: namespaceName(i % size.namespaces),
    name: `pod-${i}`,
    node: `node-${i % size.nodes}`,
    netns: `/run/netns/${size.prefix}-pod-${i}`,
    v4: `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
    ...(i % 5 === 0 ? { v6: `fd00:200::${i.toString(16)}` } : {}),
    // Every app in every namespace: pod i is the (i / namespaces)-th pod of its namespace.
    labels: { app: `app-${Math.floor(i / size.namespaces) % size.apps}`, role: i % 3 === 0 ? "client" : "server" },
  };
}

export function podObject(p: BenchPod): Pod {
  return {
    metadata: { name: p.name, namespace: p.namespace, labels: { ...p.labels } },
    spec: {
      nodeName: p.node,
      containers: [{
        name: "app",
        image: "example.invalid/app",
        ports: [{ name: "http", containerPort: 8080 }, { name: "sig", containerPort: 5060, protocol: "UDP" }],
      }],
    },
    status: { phase: "Running" },
  };
}

export function danmEpObject(p: BenchPod, podUid: string): DanmEp {
  return {
    metadata: { name: `${p.name}-net1`, namespace: p.namespace, labels: { ...p.labels } },
    spec: {
      NetworkName: network,
      apiType: "ClusterNetwork",
      EndpointID: `${p.name}-net1`,
      Interface: { Name: "net1", Address: `${p.v4}/16`, AddressIPv6: p.v6 ? `${p.v6}/64` : "" },
      Host: p.node,
      Pod: p.name,
      PodUID: podUid,
      netns: p.netns,
    },
  };
}

/**
 * Policy j lives in namespace j % namespaces and polices two apps there, chosen so that the policies together cover
 * every app of every namespace once (at 1,000 pods / 100 policies / 10 namespaces / 20 apps: 5 pods each); it admits
 * the next app of its namespace, the clients of one team's namespaces and an ipBlock; every other one polices egress
 * too, to the servers of its own team's namespaces. `port` is the knob the policy-edit changes turn.
 */
export function policyObject(size: ScenarioSize, j: number, port = 8080): MultiNetworkPolicy {
  const egress = j % 2 === 1;
  const n = j % size.namespaces, k = Math.floor(j / size.namespaces) % size.apps;
  const stride = Math.ceil(size.policies / size.namespaces);
  const team = teams[n % teams.length];
  return {
    apiVersion: "k8s.cni.cncf.io/v1beta1",
    kind: "MultiNetworkPolicy",
    metadata: {
      name: `policy-${j}`,
      namespace: namespaceName(n),
      annotations: { [PolicyForAnnotation]: `ClusterNetwork/${network}` },
    },
    spec: {
      podSelector: {
        matchExpressions: [{ key: "app", operator: "In", values: [`app-${k}`, `app-${(k + stride) % size.apps}`] }],
      },
      policyTypes: egress ? ["Ingress", "Egress"] : ["Ingress"],
      ingress: [
        {
          from: [
            { podSelector: { matchLabels: { app: `app-${(k + 1) % size.apps}` } } },
            {
              namespaceSelector: { matchLabels: { team: teams[j % teams.length] } },
              podSelector: { matchExpressions: [{ key: "role", operator: "In", values: ["client"] }] },
            },
            { ipBlock: { cidr: "172.16.0.0/12", except: [`172.${16 + (j % 16)}.0.0/16`] } },
          ],
          ports: [{ protocol: "TCP", port }, { protocol: "TCP", port: "http" }, {
            protocol: "UDP",
            port: 5000 + j,
            endPort: 5100 + j,
          }],
        },
      ],
      ...(egress
        ? {
          egress: [{
            to: [{ namespaceSelector: { matchLabels: { team } }, podSelector: { matchLabels: { role: "server" } } }],
            ports: [{ protocol: "TCP", port: 8080 }, { protocol: "UDP", port: "sig" }],
          }],
        }
        : {}),
    },
  };
}
