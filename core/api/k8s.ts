// The core Kubernetes kinds danm reads or writes, modelled only as far as danm needs them.
//
// Decoding ignores fields that are not modelled (these objects belong to other components); code that writes
// a kind it does not own (Pods, Services, Nodes…) must use patches so that unmodelled fields survive.
import { Schema, SchemaTransformation } from "effect";
import type { ResourceType } from "../ports/kube.ts";
import { ObjectMeta, StringMap } from "./meta.ts";

const opt = Schema.optionalKey;
const Str = Schema.String;
const Num = Schema.Number;
const Bool = Schema.Boolean;

/** The TypeMeta every object carries; the Kube adapters fill it in on writes. */
const typeMeta = { apiVersion: opt(Str), kind: opt(Str) };

export const Protocol = Schema.Literals(["TCP", "UDP", "SCTP"]);
export type Protocol = typeof Protocol.Type;

/** A port number or a named port. */
export const IntOrString = Schema.Union([Num, Str]);
export type IntOrString = typeof IntOrString.Type;

/** Resource quantities ("100m", "1Gi"); the API returns strings but manifests may carry numbers. */
export const Quantity = Schema.Union([Str, Num]);
export const ResourceList = Schema.Record(Str, Quantity);

export const ConditionStatus = Schema.Literals(["True", "False", "Unknown"]);

/** The shape shared by pod and node conditions (metav1.Condition differs only in naming). */
export const Condition = Schema.Struct({
  type: Str,
  status: ConditionStatus,
  reason: opt(Str),
  message: opt(Str),
  lastTransitionTime: opt(Schema.NullOr(Str)),
  lastProbeTime: opt(Schema.NullOr(Str)),
  lastHeartbeatTime: opt(Schema.NullOr(Str)),
});
export type Condition = typeof Condition.Type;

export const ObjectReference = Schema.Struct({
  apiVersion: opt(Str),
  kind: opt(Str),
  namespace: opt(Str),
  name: opt(Str),
  uid: opt(Str),
  resourceVersion: opt(Str),
  fieldPath: opt(Str),
});
export type ObjectReference = typeof ObjectReference.Type;

// --- Pod -----------------------------------------------------------------------------------------------

export const ContainerPort = Schema.Struct({
  name: opt(Str),
  containerPort: Num,
  protocol: opt(Protocol),
  hostPort: opt(Num),
  hostIP: opt(Str),
});
export type ContainerPort = typeof ContainerPort.Type;

export const Container = Schema.Struct({
  name: Str,
  image: opt(Str),
  ports: opt(Schema.Array(ContainerPort)),
  resources: opt(Schema.Struct({ limits: opt(ResourceList), requests: opt(ResourceList) })),
});
export type Container = typeof Container.Type;

export const PodSpec = Schema.Struct({
  nodeName: opt(Str),
  hostname: opt(Str),
  subdomain: opt(Str),
  hostNetwork: opt(Bool),
  serviceAccountName: opt(Str),
  terminationGracePeriodSeconds: opt(Num),
  restartPolicy: opt(Str),
  containers: Schema.Array(Container),
  initContainers: opt(Schema.Array(Container)),
});
export type PodSpec = typeof PodSpec.Type;

export const PodIP = Schema.Struct({ ip: Str });

export const PodStatus = Schema.Struct({
  phase: opt(Schema.Literals(["Pending", "Running", "Succeeded", "Failed", "Unknown"])),
  conditions: opt(Schema.Array(Condition)),
  hostIP: opt(Str),
  podIP: opt(Str),
  podIPs: opt(Schema.Array(PodIP)),
  reason: opt(Str),
  message: opt(Str),
  startTime: opt(Str),
});
export type PodStatus = typeof PodStatus.Type;

export const Pod = Schema.Struct({ ...typeMeta, metadata: ObjectMeta, spec: PodSpec, status: opt(PodStatus) });
export type Pod = typeof Pod.Type;

// --- Service -------------------------------------------------------------------------------------------

export const ServicePort = Schema.Struct({
  name: opt(Str),
  port: Num,
  targetPort: opt(IntOrString),
  protocol: opt(Protocol),
  nodePort: opt(Num),
  appProtocol: opt(Str),
});
export type ServicePort = typeof ServicePort.Type;

export const IPFamily = Schema.Literals(["IPv4", "IPv6"]);

export const ServiceSpec = Schema.Struct({
  type: opt(Schema.Literals(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"])),
  selector: opt(StringMap),
  ports: opt(Schema.Array(ServicePort)),
  clusterIP: opt(Str),
  clusterIPs: opt(Schema.Array(Str)),
  ipFamilies: opt(Schema.Array(IPFamily)),
  ipFamilyPolicy: opt(Str),
  publishNotReadyAddresses: opt(Bool),
  externalName: opt(Str),
});
export type ServiceSpec = typeof ServiceSpec.Type;

export const Service = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  spec: opt(ServiceSpec),
  status: opt(Schema.Struct({ loadBalancer: opt(Schema.Unknown) })),
});
export type Service = typeof Service.Type;

// --- Endpoints (core/v1) --------------------------------------------------------------------------------

export const EndpointAddress = Schema.Struct({
  ip: Str,
  hostname: opt(Str),
  nodeName: opt(Str),
  targetRef: opt(ObjectReference),
});
export type EndpointAddress = typeof EndpointAddress.Type;

export const EndpointPort = Schema.Struct({
  name: opt(Str),
  port: Num,
  protocol: opt(Protocol),
  appProtocol: opt(Str),
});
export type EndpointPort = typeof EndpointPort.Type;

export const EndpointSubset = Schema.Struct({
  addresses: opt(Schema.Array(EndpointAddress)),
  notReadyAddresses: opt(Schema.Array(EndpointAddress)),
  ports: opt(Schema.Array(EndpointPort)),
});
export type EndpointSubset = typeof EndpointSubset.Type;

export const Endpoints = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  subsets: opt(Schema.Array(EndpointSubset)),
});
export type Endpoints = typeof Endpoints.Type;

// --- EndpointSlice (discovery.k8s.io/v1) ----------------------------------------------------------------

export const EndpointConditions = Schema.Struct({
  ready: opt(Bool),
  serving: opt(Bool),
  terminating: opt(Bool),
});

export const Endpoint = Schema.Struct({
  addresses: Schema.Array(Str),
  conditions: opt(EndpointConditions),
  hostname: opt(Str),
  nodeName: opt(Str),
  zone: opt(Str),
  targetRef: opt(ObjectReference),
});
export type Endpoint = typeof Endpoint.Type;

/** A list the apiserver serves as `null` when empty (a Go slice without omitempty); decoded as []. */
const nullableList = <S extends Schema.Top>(item: S) =>
  Schema.NullOr(Schema.Array(item)).pipe(
    Schema.decodeTo(
      Schema.toType(Schema.Array(item)),
      SchemaTransformation.transform<ReadonlyArray<S["Type"]>, ReadonlyArray<S["Type"]> | null>({
        decode: (v) => v ?? [],
        encode: (v) => v,
      }),
    ),
  );

export const EndpointSlicePort = Schema.Struct({
  name: opt(Str),
  port: opt(Num),
  protocol: opt(Protocol),
  appProtocol: opt(Str),
});
export type EndpointSlicePort = typeof EndpointSlicePort.Type;

export const EndpointSlice = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  addressType: Schema.Literals(["IPv4", "IPv6", "FQDN"]),
  // Both come back as null from the apiserver when empty.
  endpoints: nullableList(Endpoint),
  ports: opt(nullableList(EndpointSlicePort)),
});
export type EndpointSlice = typeof EndpointSlice.Type;

// --- Node ----------------------------------------------------------------------------------------------

export const NodeAddress = Schema.Struct({
  type: Str, // InternalIP, ExternalIP, Hostname, InternalDNS, ExternalDNS
  address: Str,
});
export type NodeAddress = typeof NodeAddress.Type;

export const Node = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  spec: opt(Schema.Struct({
    podCIDR: opt(Str),
    podCIDRs: opt(Schema.Array(Str)),
    providerID: opt(Str),
    unschedulable: opt(Bool),
  })),
  status: opt(Schema.Struct({
    addresses: opt(Schema.Array(NodeAddress)),
    conditions: opt(Schema.Array(Condition)),
    capacity: opt(ResourceList),
    allocatable: opt(ResourceList),
  })),
});
export type Node = typeof Node.Type;

// --- Namespace -----------------------------------------------------------------------------------------

export const Namespace = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  spec: opt(Schema.Struct({ finalizers: opt(Schema.Array(Str)) })),
  status: opt(Schema.Struct({ phase: opt(Str) })),
});
export type Namespace = typeof Namespace.Type;

// --- Lease (coordination.k8s.io/v1) ---------------------------------------------------------------------

export const Lease = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  spec: opt(Schema.Struct({
    holderIdentity: opt(Schema.NullOr(Str)),
    leaseDurationSeconds: opt(Schema.NullOr(Num)),
    /** RFC 3339 with microseconds (MicroTime). */
    acquireTime: opt(Schema.NullOr(Str)),
    renewTime: opt(Schema.NullOr(Str)),
    leaseTransitions: opt(Schema.NullOr(Num)),
  })),
});
export type Lease = typeof Lease.Type;

// --- Event (core/v1) -----------------------------------------------------------------------------------

export const Event = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  involvedObject: ObjectReference,
  reason: opt(Str),
  message: opt(Str),
  type: opt(Str), // Normal | Warning
  count: opt(Num),
  firstTimestamp: opt(Schema.NullOr(Str)),
  lastTimestamp: opt(Schema.NullOr(Str)),
  eventTime: opt(Schema.NullOr(Str)),
  source: opt(Schema.Struct({ component: opt(Str), host: opt(Str) })),
  reportingComponent: opt(Str),
  reportingInstance: opt(Str),
  action: opt(Str),
});
export type Event = typeof Event.Type;

// --- NetworkAttachmentDefinition (k8s.cni.cncf.io/v1) -----------------------------------------------------

export const NetworkAttachmentDefinition = Schema.Struct({
  ...typeMeta,
  metadata: ObjectMeta,
  spec: opt(Schema.Struct({
    /** A JSON-encoded CNI network configuration (or conflist). */
    config: opt(Str),
  })),
});
export type NetworkAttachmentDefinition = typeof NetworkAttachmentDefinition.Type;

// --- Resource types ------------------------------------------------------------------------------------

const rt = <A, I>(
  group: string,
  version: string,
  kind: string,
  plural: string,
  namespaced: boolean,
  schema: Schema.Codec<A, I>,
): ResourceType<A, I> => ({ group, version, kind, plural, namespaced, schema });

export const PodResource = rt("", "v1", "Pod", "pods", true, Pod);
export const ServiceResource = rt("", "v1", "Service", "services", true, Service);
export const EndpointsResource = rt("", "v1", "Endpoints", "endpoints", true, Endpoints);
export const EndpointSliceResource = rt(
  "discovery.k8s.io",
  "v1",
  "EndpointSlice",
  "endpointslices",
  true,
  EndpointSlice,
);
export const NodeResource = rt("", "v1", "Node", "nodes", false, Node);
export const NamespaceResource = rt("", "v1", "Namespace", "namespaces", false, Namespace);
export const LeaseResource = rt("coordination.k8s.io", "v1", "Lease", "leases", true, Lease);
export const EventResource = rt("", "v1", "Event", "events", true, Event);
export const NetworkAttachmentDefinitionResource = rt(
  "k8s.cni.cncf.io",
  "v1",
  "NetworkAttachmentDefinition",
  "network-attachment-definitions",
  true,
  NetworkAttachmentDefinition,
);

/** Core kinds whose `status` is a separate subresource (writes to the main resource leave it alone). */
export const statusSubresources: ReadonlyArray<{ readonly group: string; readonly plural: string }> = [
  PodResource,
  ServiceResource,
  NodeResource,
  NamespaceResource,
];
