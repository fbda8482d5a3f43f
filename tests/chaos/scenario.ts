// What the chaos run churns: three danm networks and the pods on them.
//
//   mv  DanmNet macvlan on the nodes' ens4, generated delegate config, a large pool (/17 of a /16): eth0 of every pod
//   br  DanmNet through a static bridge .conf (bridge cbr-chaos joined across the nodes), a small pool (48 addresses
//       shared by every node, so all of them write the same IPBlock)
//   vx  DanmNet macvlan on a unicast VXLAN (netwatcher's vx_chaosvx on every node), dual-stack
//
// Pods ask for dynamic addresses, except the "static-<k>" pods (a StatefulSet's pods: the same name, a new UID each
// time) which ask for fixed IPv4 addresses on mv and vx, outside the dynamic pools.
import type { Json } from "../harness/stack.ts";

export const Namespace = "chaos";
export const BridgeName = "cbr-chaos";

export const networks: ReadonlyArray<Json> = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: Namespace } },
  {
    apiVersion: "danm.io/v1",
    kind: "DanmNet",
    metadata: { name: "mv", namespace: Namespace },
    spec: {
      NetworkID: "chaosmv",
      NetworkType: "macvlan",
      Options: {
        host_device: "ens4",
        container_prefix: "mv",
        cidr: "10.90.0.0/16",
        allocation_pool: { start: "10.90.0.1", end: "10.90.127.254" },
      },
    },
  },
  {
    apiVersion: "danm.io/v1",
    kind: "DanmNet",
    metadata: { name: "br", namespace: Namespace },
    spec: {
      NetworkID: "chaosbr",
      NetworkType: "bridge",
      Options: {
        container_prefix: "br",
        cidr: "10.91.0.0/24",
        allocation_pool: { start: "10.91.0.16", end: "10.91.0.63" },
      },
    },
  },
  {
    apiVersion: "danm.io/v1",
    kind: "DanmNet",
    metadata: { name: "vx", namespace: Namespace, annotations: { "danm.io/vxlan-mode": "unicast" } },
    spec: {
      NetworkID: "chaosvx",
      NetworkType: "macvlan",
      Options: {
        host_device: "ens3",
        vxlan: 900,
        container_prefix: "vx",
        cidr: "10.92.0.0/24",
        allocation_pool: { start: "10.92.0.10", end: "10.92.0.199" },
        net6: "fd00:92::/64",
      },
    },
  },
];

/** The static bridge delegate of `br`; host-local's state (unused: danm's IPAM replaces it) stays in `dataDir`. */
export const bridgeConf = (dataDir: string) =>
  JSON.stringify({
    cniVersion: "1.0.0",
    name: "chaosbr",
    type: "bridge",
    bridge: BridgeName,
    ipam: { type: "host-local", ranges: [[{ subnet: "10.91.0.0/24" }]], dataDir },
  });

/** Interfaces every churned pod gets, in order: eth0 on mv, br1 on br, vx2 on vx. */
export const podInterfaces = ["eth0", "br1", "vx2"] as const;

export const staticV4 = (k: number) => ({ mv: `10.90.200.${10 + k}`, vx: `10.92.0.${200 + k}` });

export function podManifest(
  name: string,
  node: string,
  o: { readonly staticIndex?: number; readonly annotations?: Readonly<Record<string, string>> } = {},
): Json {
  const fixed = o.staticIndex === undefined ? undefined : staticV4(o.staticIndex);
  const interfaces = [
    { network: "mv", ip: fixed?.mv ?? "dynamic" },
    { network: "br", ip: "dynamic" },
    { network: "vx", ip: fixed?.vx ?? "dynamic", ip6: "dynamic" },
  ];
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: Namespace,
      labels: { app: "chaos" },
      annotations: { "danm.io/interfaces": JSON.stringify(interfaces), ...(o.annotations ?? {}) },
    },
    spec: { nodeName: node, containers: [{ name: "app", image: "registry.invalid/chaos:1" }] },
  };
}
