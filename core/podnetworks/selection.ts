// Which networks a pod gets, in which order and under which interface names (danm-spec §2.6, §4.3, §4.5), shared
// by the CNI (which attaches them) and the webhook (which refuses pods that could never start).
//
// Precedence:
//   1. the danm interfaces annotation (`danm.io/interfaces`, or DANM v4.3.0's `danm.k8s.io/interfaces`), when it
//      lists at least one interface;
//   2. else the NPWG annotation `k8s.v1.cni.cncf.io/networks`: each element names a NetworkAttachmentDefinition
//      or, when no NAD of that name exists, a danm network by name (DanmNet, then TenantNetwork in the pod's
//      namespace, then ClusterNetwork);
//   3. else the default network: DanmNet `default` in the pod's namespace, then TenantNetwork `default` there,
//      then ClusterNetwork `default` (DANM's lookup order, §4.3), with DANM's implicit `ip: dynamic` when the
//      network has a cidr.
// An empty danm list counts as absent (DANM: "missing annotation or empty array → default network"), so an NPWG
// annotation next to it still applies. ClusterNetworks honour AllowedTenants (empty = every namespace).
//
// NPWG elements on danm networks: `ips` become the static `ip`/`ip6` requests (at most one per family); without
// `ips` every family the network has is allocated dynamically, which is what NPWG users expect from an IPAM'd
// network. danm's namespaced kinds are attachable from their own namespace only, as in DANM.
import { Context, Effect, Layer, Schedule, Schema } from "effect";
import {
  type AnnotationError,
  type InterfaceRequest,
  InterfacesAnnotation,
  LegacyInterfacesAnnotation,
  NetworksAnnotation,
  type NetworkSelectionElement,
  parseNetworkSelection,
  podInterfaces,
} from "../api/annotations.ts";
import {
  type ClusterNetwork,
  ClusterNetworkResource,
  type DanmNet,
  DanmNetResource,
  type NetworkKind,
  type TenantNetwork,
  TenantNetworkResource,
} from "../api/danm.ts";
import { type NetworkAttachmentDefinition, NetworkAttachmentDefinitionResource } from "../api/k8s.ts";
import { type Informer, isTransient, Kube, type KubeError, type ResourceType } from "../ports/kube.ts";
import { type NamingScheme, planInterfaceNames } from "./naming.ts";

export const DefaultNetworkName = "default";

// ---- Errors -------------------------------------------------------------------------------------------------------

/** A pod's network selection cannot be honoured; names the annotation, entry and field where there is one. */
export class SelectionError extends Schema.TaggedError<SelectionError>()("SelectionError", {
  annotation: Schema.optionalKey(Schema.String),
  entry: Schema.optionalKey(Schema.Int),
  field: Schema.optionalKey(Schema.String),
  reason: Schema.String,
}) {
  override get message(): string {
    const where = [
      ...(this.annotation === undefined ? [] : [`annotation ${this.annotation}`]),
      ...(this.entry === undefined ? [] : [`entry ${this.entry}`]),
      ...(this.field === undefined ? [] : [`field ${this.field}`]),
    ].join(", ");
    return where ? `${where}: ${this.reason}` : this.reason;
  }
}

/** Looking a network up failed for a reason other than its absence (apiserver unreachable, forbidden …). */
export class DirectoryError extends Schema.TaggedError<DirectoryError>()("DirectoryError", {
  kind: Schema.String,
  namespace: Schema.optionalKey(Schema.String),
  objectName: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    const obj = this.namespace ? `${this.namespace}/${this.objectName}` : this.objectName;
    return `looking up ${this.kind} ${obj}: ${this.detail}`;
  }
}

const fromAnnotationError = (e: AnnotationError): SelectionError =>
  new SelectionError({
    annotation: e.annotation,
    reason: e.reason,
    ...(e.entry === undefined ? {} : { entry: e.entry }),
    ...(e.field === undefined ? {} : { field: e.field }),
  });

// ---- Lookups ------------------------------------------------------------------------------------------------------

export interface NetworkDirectoryService {
  readonly danmNet: (namespace: string, name: string) => Effect.Effect<DanmNet | undefined, DirectoryError>;
  readonly tenantNetwork: (namespace: string, name: string) => Effect.Effect<TenantNetwork | undefined, DirectoryError>;
  readonly clusterNetwork: (name: string) => Effect.Effect<ClusterNetwork | undefined, DirectoryError>;
  readonly attachmentDefinition: (
    namespace: string,
    name: string,
  ) => Effect.Effect<NetworkAttachmentDefinition | undefined, DirectoryError>;
}

/** Where the networks a pod names are looked up: direct reads (CNI) or informer caches with a fallback (webhook). */
export class NetworkDirectory extends Context.Service<NetworkDirectory, NetworkDirectoryService>()(
  "danm/core/podnetworks/selection/NetworkDirectory",
) {}

/** A read through the Kube port; NotFound (also: the kind's CRD is not installed) is `undefined`. */
export const getOrUndefined = <A, I>(
  kube: Kube["Service"],
  rt: ResourceType<A, I>,
  name: string,
  namespace?: string,
): Effect.Effect<A | undefined, DirectoryError> =>
  kube.get(rt, name, namespace === undefined ? {} : { namespace }).pipe(
    // Transient failures (429, dropped connections) are retried briefly before they count.
    Effect.retry({ times: 3, schedule: Schedule.exponential("20 millis"), while: isTransient }),
    Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
    Effect.mapError((e: KubeError) =>
      new DirectoryError({
        kind: rt.kind,
        objectName: name,
        detail: e.message,
        ...(namespace === undefined ? {} : { namespace }),
      })
    ),
  );

/** Direct reads through the Kube port, for callers without caches (the CNI). */
export const networkDirectoryFromKube: Effect.Effect<NetworkDirectoryService, never, Kube> = Effect.gen(
  function* () {
    const kube = yield* Kube;
    return {
      danmNet: (ns, name) => getOrUndefined(kube, DanmNetResource, name, ns),
      tenantNetwork: (ns, name) => getOrUndefined(kube, TenantNetworkResource, name, ns),
      clusterNetwork: (name) => getOrUndefined(kube, ClusterNetworkResource, name),
      attachmentDefinition: (ns, name) => getOrUndefined(kube, NetworkAttachmentDefinitionResource, name, ns),
    };
  },
);

/** The informer's object, or a direct read when the cache does not have it (yet). */
export const cachedOrGet = <A, I>(
  kube: Kube["Service"],
  informer: Informer<A>,
  rt: ResourceType<A, I>,
  name: string,
  namespace?: string,
): Effect.Effect<A | undefined, DirectoryError> =>
  Effect.flatMap(
    informer.get(name, namespace),
    (hit): Effect.Effect<A | undefined, DirectoryError> =>
      hit !== undefined ? Effect.succeed(hit) : getOrUndefined(kube, rt, name, namespace),
  );

/**
 * A directory answering from informers (the webhook's and the CNI daemon's caches), with a direct read on a miss:
 * a network created a moment ago may not be in the cache yet. NADs are read directly: only pods using the NPWG
 * annotation need them, and their CRD may be absent.
 */
export function cachedNetworkDirectory(
  kube: Kube["Service"],
  caches: {
    readonly danmNets: Informer<DanmNet>;
    readonly tenantNets: Informer<TenantNetwork>;
    readonly clusterNets: Informer<ClusterNetwork>;
  },
): NetworkDirectoryService {
  return {
    danmNet: (ns, name) => cachedOrGet(kube, caches.danmNets, DanmNetResource, name, ns),
    tenantNetwork: (ns, name) => cachedOrGet(kube, caches.tenantNets, TenantNetworkResource, name, ns),
    clusterNetwork: (name) => cachedOrGet(kube, caches.clusterNets, ClusterNetworkResource, name),
    attachmentDefinition: (ns, name) => getOrUndefined(kube, NetworkAttachmentDefinitionResource, name, ns),
  };
}

export const layerKubeNetworkDirectory: Layer.Layer<NetworkDirectory, never, Kube> = Layer.effect(
  NetworkDirectory,
  networkDirectoryFromKube,
);

// ---- What the annotations ask for (pure) --------------------------------------------------------------------------

type Annotations = { readonly [key: string]: string } | undefined;

export type PodSelection =
  | {
    readonly _tag: "Danm";
    /** The annotation key the list was read from. */
    readonly annotation: string;
    readonly requests: ReadonlyArray<InterfaceRequest>;
    /** The NPWG annotation was present too and is ignored. */
    readonly npwgIgnored: boolean;
  }
  | { readonly _tag: "Npwg"; readonly elements: ReadonlyArray<NetworkSelectionElement> }
  | { readonly _tag: "Default" };

/** Decodes the pod's selection annotations and applies the precedence above. */
export function podSelection(annotations: Annotations): Effect.Effect<PodSelection, SelectionError> {
  return Effect.gen(function* () {
    const requests = yield* Effect.mapError(podInterfaces(annotations), fromAnnotationError);
    const npwgValue = annotations?.[NetworksAnnotation];
    if (requests.length > 0) {
      const annotation = annotations?.[InterfacesAnnotation] !== undefined
        ? InterfacesAnnotation
        : LegacyInterfacesAnnotation;
      return { _tag: "Danm", annotation, requests, npwgIgnored: (npwgValue ?? "").trim() !== "" } as const;
    }
    if (npwgValue !== undefined) {
      // No default namespace here: whether the user named one matters for the lookup (see resolveNpwgEntries).
      const elements = yield* Effect.mapError(parseNetworkSelection(npwgValue), fromAnnotationError);
      if (elements.length > 0) return { _tag: "Npwg", elements } as const;
    }
    return { _tag: "Default" } as const;
  });
}

// ---- Resolution (Effect lookups) ----------------------------------------------------------------------------------

export type AttachedNetwork =
  | { readonly kind: "DanmNet"; readonly object: DanmNet }
  | { readonly kind: "TenantNetwork"; readonly object: TenantNetwork }
  | { readonly kind: "ClusterNetwork"; readonly object: ClusterNetwork }
  | { readonly kind: "NetworkAttachmentDefinition"; readonly object: NetworkAttachmentDefinition };

export type DanmAttachedNetwork = Extract<AttachedNetwork, { readonly kind: NetworkKind }>;

export const isDanmNetwork = (n: AttachedNetwork): n is DanmAttachedNetwork => n.kind !== "NetworkAttachmentDefinition";

/** One interface the pod gets. */
export interface Attachment {
  /** Sequence index: position in the pod's list. */
  readonly index: number;
  readonly ifName: string;
  readonly source: "danm" | "npwg" | "default";
  /** The annotation and entry the interface was asked for in (absent for the default network). */
  readonly annotation?: string;
  readonly entry?: number;
  readonly network: AttachedNetwork;
  /** "dynamic", "none" or a static address (danm networks; NAD attachments carry `npwgIps` instead). */
  readonly ip?: string;
  readonly ip6?: string;
  readonly proutes: { readonly [dst: string]: string };
  readonly proutes6: { readonly [dst: string]: string };
  readonly device?: string;
  /** The NPWG element as written, for delegates that need its other fields (mac, ips, cni-args …). */
  readonly npwg?: NetworkSelectionElement;
}

export interface PodAttachments {
  readonly source: "danm" | "npwg" | "default";
  readonly attachments: ReadonlyArray<Attachment>;
  /** Things worth telling the user that do not stop the pod. */
  readonly warnings: ReadonlyArray<string>;
}

export interface PodRef {
  readonly namespace: string;
  readonly annotations?: Annotations;
}

const networkLabel = (kind: string, name: string, namespace?: string) =>
  namespace ? `${kind} ${namespace}/${name}` : `${kind} ${name}`;

/** Why a pod in `namespace` may not attach ClusterNetwork `net`, if it may not. */
export function allowedTenantsProblem(net: ClusterNetwork, namespace: string): string | undefined {
  const allowed = net.spec.AllowedTenants ?? [];
  if (allowed.length === 0 || allowed.includes(namespace)) return undefined;
  return `namespace ${namespace} is not in the AllowedTenants of ClusterNetwork ${net.metadata.name ?? ""} ` +
    `(${allowed.join(", ")})`;
}

/**
 * A reference written as "<namespace>/<name>" (object names cannot hold a "/"): DanmNets and TenantNetworks are
 * attachable from their own namespace only, as in DANM, and ClusterNetworks have no namespace.
 */
export function namespaceLocalProblem(kind: NetworkKind, name: string, podNamespace: string): string | undefined {
  const slash = name.indexOf("/");
  if (slash < 0) return undefined;
  const [namespace, rest] = [name.slice(0, slash), name.slice(slash + 1)];
  if (kind === "ClusterNetwork") {
    return `"${name}": a ClusterNetwork is cluster-scoped, name it without a namespace ("${rest}")`;
  }
  if (namespace === podNamespace) {
    return `"${name}": references are namespace-local, name the ${kind} without its namespace ("${rest}")`;
  }
  return `"${name}" is in namespace ${namespace}: ${kind} references are namespace-local (a pod in ` +
    `${podNamespace} attaches the ${kind}s of ${podNamespace}); to share a network between namespaces use a ` +
    `ClusterNetwork`;
}

const lookupDanm = (
  dir: NetworkDirectoryService,
  kind: NetworkKind,
  namespace: string,
  name: string,
): Effect.Effect<DanmAttachedNetwork | undefined, DirectoryError> => {
  switch (kind) {
    case "DanmNet":
      return Effect.map(dir.danmNet(namespace, name), (object) => object && { kind, object });
    case "TenantNetwork":
      return Effect.map(dir.tenantNetwork(namespace, name), (object) => object && { kind, object });
    case "ClusterNetwork":
      return Effect.map(dir.clusterNetwork(name), (object) => object && { kind, object });
  }
};

/** Splits NPWG `ips` into one static IPv4 and one static IPv6 request. */
function npwgAddresses(
  e: NetworkSelectionElement,
  entry: number,
  net: DanmAttachedNetwork,
): Effect.Effect<{ ip?: string; ip6?: string }, SelectionError> {
  const options = net.object.spec.Options ?? {};
  if (e.ips === undefined || e.ips.length === 0) {
    return Effect.succeed({
      ...(options.cidr ? { ip: "dynamic" } : {}),
      ...(options.net6 ? { ip6: "dynamic" } : {}),
    });
  }
  let ip: string | undefined, ip6: string | undefined;
  for (const [i, value] of e.ips.entries()) {
    const v6 = value.includes(":");
    if ((v6 ? ip6 : ip) !== undefined) {
      return Effect.fail(
        new SelectionError({
          annotation: NetworksAnnotation,
          entry,
          field: `ips[${i}]`,
          reason: `a danm network takes at most one IPv${v6 ? 6 : 4} address per interface`,
        }),
      );
    }
    if (v6) ip6 = value;
    else ip = value;
  }
  return Effect.succeed({ ...(ip ? { ip } : {}), ...(ip6 ? { ip6 } : {}) });
}

interface Unnamed extends Omit<Attachment, "ifName"> {
  readonly requestedName?: string;
}

const resolveDanmEntries = (
  dir: NetworkDirectoryService,
  pod: PodRef,
  annotation: string,
  requests: ReadonlyArray<InterfaceRequest>,
) =>
  Effect.forEach(requests, (r, entry) =>
    Effect.gen(function* () {
      const field = ({ DanmNet: "network", TenantNetwork: "tenantNetwork", ClusterNetwork: "clusterNetwork" })[
        r.network.kind
      ];
      const crossNamespace = namespaceLocalProblem(r.network.kind, r.network.name, pod.namespace);
      if (crossNamespace) return yield* new SelectionError({ annotation, entry, field, reason: crossNamespace });
      const net = yield* lookupDanm(dir, r.network.kind, pod.namespace, r.network.name);
      if (net === undefined) {
        const ns = r.network.kind === "ClusterNetwork" ? undefined : pod.namespace;
        return yield* new SelectionError({
          annotation,
          entry,
          field,
          reason: `${networkLabel(r.network.kind, r.network.name, ns)} does not exist`,
        });
      }
      if (net.kind === "ClusterNetwork") {
        const denied = allowedTenantsProblem(net.object, pod.namespace);
        if (denied) return yield* new SelectionError({ annotation, entry, field, reason: denied });
      }
      return {
        index: entry,
        source: "danm",
        annotation,
        entry,
        network: net,
        ...(r.ip === undefined ? {} : { ip: r.ip }),
        ...(r.ip6 === undefined ? {} : { ip6: r.ip6 }),
        proutes: r.proutes,
        proutes6: r.proutes6,
        ...(r.device === undefined ? {} : { device: r.device }),
      } satisfies Unnamed;
    }));

const resolveNpwgEntries = (
  dir: NetworkDirectoryService,
  pod: PodRef,
  elements: ReadonlyArray<NetworkSelectionElement>,
) =>
  Effect.forEach(elements, (e, entry) =>
    Effect.gen(function* () {
      const annotation = NetworksAnnotation;
      const ns = e.namespace ?? pod.namespace;
      const base = {
        index: entry,
        source: "npwg" as const,
        annotation,
        entry,
        proutes: {},
        proutes6: {},
        npwg: e,
        ...(e.interface === undefined ? {} : { requestedName: e.interface }),
        ...(e.deviceID === undefined ? {} : { device: e.deviceID }),
      };
      const nad = yield* dir.attachmentDefinition(ns, e.name);
      if (nad !== undefined) {
        return { ...base, network: { kind: "NetworkAttachmentDefinition", object: nad } } satisfies Unnamed;
      }
      let net: DanmAttachedNetwork | undefined;
      if (ns === pod.namespace) {
        net = (yield* lookupDanm(dir, "DanmNet", ns, e.name)) ?? (yield* lookupDanm(dir, "TenantNetwork", ns, e.name));
      }
      if (net === undefined && e.namespace === undefined) {
        net = yield* lookupDanm(dir, "ClusterNetwork", ns, e.name);
      }
      if (net === undefined) {
        const reason = ns === pod.namespace
          ? `no NetworkAttachmentDefinition ${ns}/${e.name}, DanmNet, TenantNetwork` +
            `${e.namespace === undefined ? " or ClusterNetwork" : ""} named "${e.name}" exists`
          : `no NetworkAttachmentDefinition ${ns}/${e.name} exists, and references to danm networks are ` +
            `namespace-local: a pod in ${pod.namespace} attaches the DanmNets and TenantNetworks of ` +
            `${pod.namespace}, and ClusterNetworks (named without a namespace)`;
        return yield* new SelectionError({
          annotation,
          entry,
          field: "name",
          reason,
        });
      }
      if (net.kind === "ClusterNetwork") {
        const denied = allowedTenantsProblem(net.object, pod.namespace);
        if (denied) return yield* new SelectionError({ annotation, entry, field: "name", reason: denied });
      }
      const addresses = yield* npwgAddresses(e, entry, net);
      return { ...base, network: net, ...addresses } satisfies Unnamed;
    }));

const resolveDefault = (dir: NetworkDirectoryService, pod: PodRef) =>
  Effect.gen(function* () {
    const net = (yield* lookupDanm(dir, "DanmNet", pod.namespace, DefaultNetworkName)) ??
      (yield* lookupDanm(dir, "TenantNetwork", pod.namespace, DefaultNetworkName)) ??
      (yield* lookupDanm(dir, "ClusterNetwork", pod.namespace, DefaultNetworkName));
    if (net === undefined) {
      return yield* new SelectionError({
        reason: `the pod names no network and there is no default network for namespace ${pod.namespace} ` +
          `(DanmNet or TenantNetwork "${DefaultNetworkName}" there, or ClusterNetwork "${DefaultNetworkName}")`,
      });
    }
    if (net.kind === "ClusterNetwork") {
      const denied = allowedTenantsProblem(net.object, pod.namespace);
      if (denied) return yield* new SelectionError({ reason: `default network: ${denied}` });
    }
    // DANM's implicit request is `ip: dynamic`, which only means something on a network with a cidr.
    return [
      {
        index: 0,
        source: "default",
        network: net,
        ...(net.object.spec.Options?.cidr ? { ip: "dynamic" } : {}),
        proutes: {},
        proutes6: {},
      } satisfies Unnamed,
    ];
  });

const prefixOf = (n: AttachedNetwork): string | undefined =>
  isDanmNetwork(n) ? n.object.spec.Options?.container_prefix : undefined;

/**
 * Every interface the pod gets, in order, with its network object and name. Fails with a SelectionError when the
 * annotations are malformed, a network is missing or not allowed for the namespace, or a name cannot be created.
 */
export const resolvePodAttachments = (
  pod: PodRef,
  scheme: NamingScheme = "",
): Effect.Effect<PodAttachments, SelectionError | DirectoryError, NetworkDirectory> =>
  Effect.gen(function* () {
    const dir = yield* NetworkDirectory;
    const selection = yield* podSelection(pod.annotations);
    const warnings: string[] = [];
    let unnamed: ReadonlyArray<Unnamed>;
    switch (selection._tag) {
      case "Danm":
        if (selection.npwgIgnored) {
          warnings.push(`${NetworksAnnotation} is ignored: ${selection.annotation} takes precedence`);
        }
        unnamed = yield* resolveDanmEntries(dir, pod, selection.annotation, selection.requests);
        break;
      case "Npwg":
        unnamed = yield* resolveNpwgEntries(dir, pod, selection.elements);
        break;
      case "Default":
        unnamed = yield* resolveDefault(dir, pod);
        break;
    }
    const plan = planInterfaceNames(
      unnamed.map((u) => ({ prefix: prefixOf(u.network), requested: u.requestedName })),
      scheme,
    );
    const [problem] = plan.problems;
    if (problem) {
      const u = unnamed[problem.index];
      return yield* new SelectionError({
        reason: `interface name: ${problem.reason}`,
        ...(u.annotation === undefined ? {} : { annotation: u.annotation }),
        ...(u.entry === undefined ? {} : { entry: u.entry }),
        ...(u.requestedName === undefined ? {} : { field: "interface" }),
      });
    }
    const source = selection._tag === "Danm" ? "danm" : selection._tag === "Npwg" ? "npwg" : "default";
    const attachments = unnamed.map(({ requestedName: _r, ...u }, i) => ({ ...u, ifName: plan.names[i] }));
    return { source, attachments, warnings } satisfies PodAttachments;
  });
