// Builders for the objects svcwatcher reads: pods with readiness and ports, DanmEps, DANM Services.
import type { DanmEp } from "../../../core/api/danm.ts";
import type { Pod, Service, ServicePort } from "../../../core/api/k8s.ts";

export const ns = "apps";

export interface PodSpecOptions {
  readonly labels?: Record<string, string>;
  readonly ready?: boolean;
  readonly node?: string;
  readonly hostname?: string;
  readonly uid?: string;
  readonly ports?: ReadonlyArray<{ name: string; containerPort: number; protocol?: "TCP" | "UDP" | "SCTP" }>;
  readonly networkStatus?: ReadonlyArray<{ name: string; ips: ReadonlyArray<string> }>;
  readonly deleting?: boolean;
  readonly phase?: "Pending" | "Running" | "Succeeded" | "Failed";
  readonly namespace?: string;
}

export function pod(name: string, o: PodSpecOptions = {}): Pod {
  return {
    metadata: {
      name,
      namespace: o.namespace ?? ns,
      uid: o.uid ?? `uid-${name}`,
      labels: o.labels ?? { app: "lb" },
      ...(o.networkStatus
        ? { annotations: { "k8s.v1.cni.cncf.io/network-status": JSON.stringify(o.networkStatus) } }
        : {}),
      ...(o.deleting ? { deletionTimestamp: "2030-01-01T00:00:00Z", deletionGracePeriodSeconds: 30 } : {}),
    },
    spec: {
      nodeName: o.node ?? "node-a",
      ...(o.hostname ? { hostname: o.hostname } : {}),
      containers: [{
        name: "c",
        image: "busybox",
        ...(o.ports ? { ports: o.ports.map((p) => ({ ...p })) } : {}),
      }],
    },
    status: {
      phase: o.phase ?? "Running",
      conditions: [{ type: "Ready", status: o.ready === false ? "False" : "True" }],
    },
  };
}

export interface EpOptions {
  readonly network?: string;
  readonly apiType?: "DanmNet" | "TenantNetwork" | "ClusterNetwork" | "";
  readonly v4?: string;
  readonly v6?: string;
  readonly labels?: Record<string, string>;
  readonly podUid?: string;
  readonly namespace?: string;
}

export function danmEp(name: string, podName: string, o: EpOptions = {}): DanmEp {
  return {
    metadata: { name, namespace: o.namespace ?? ns, labels: o.labels ?? { app: "lb" } },
    spec: {
      NetworkName: o.network ?? "internal",
      EndpointID: name,
      Interface: {
        Name: "eth1",
        ...(o.v4 !== undefined ? { Address: o.v4 } : {}),
        ...(o.v6 !== undefined ? { AddressIPv6: o.v6 } : {}),
      },
      Pod: podName,
      PodUID: o.podUid ?? `uid-${podName}`,
      ...(o.apiType !== undefined ? { apiType: o.apiType } : { apiType: "DanmNet" }),
    },
  };
}

export interface ServiceOptions {
  readonly annotations?: Record<string, string>;
  readonly labels?: Record<string, string>;
  readonly ports?: ReadonlyArray<ServicePort>;
  readonly selector?: Record<string, string>;
  readonly publishNotReady?: boolean;
  readonly headless?: boolean;
  readonly uid?: string;
}

export function service(name: string, o: ServiceOptions = {}): Service {
  return {
    metadata: {
      name,
      namespace: ns,
      uid: o.uid ?? `uid-svc-${name}`,
      annotations: o.annotations ?? { "danm.io/selector": '{"app":"lb"}', "danm.io/network": "internal" },
      ...(o.labels ? { labels: o.labels } : {}),
    },
    spec: {
      ports: o.ports ?? [{ name: "http", port: 80, protocol: "TCP" }],
      ...(o.selector ? { selector: o.selector } : {}),
      ...(o.publishNotReady ? { publishNotReadyAddresses: true } : {}),
      ...(o.headless === false ? {} : { clusterIP: "None" }),
    },
  };
}
