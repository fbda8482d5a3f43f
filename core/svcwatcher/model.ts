// The pure half of svcwatcher: which Services are ours, which pod addresses a Service selects, and the exact
// Endpoints object and EndpointSlices that follow from them (danm-spec §6, fixing the gaps of §6.5).
//
// Selection (DANM §6.2, extended to NAD-attached pods):
//   * a DanmEp in the Service's namespace whose labels carry every `danm.io/selector` pair and whose network
//     matches one of the Service's network annotations (`network` ↔ apiType DanmNet or "", `tenantNetwork` ↔
//     TenantNetwork, `clusterNetwork` ↔ ClusterNetwork) selects its pod's addresses on that interface;
//   * NAD rule: a pod with NO DanmEp on a `danm.io/network: X` network, whose own labels carry the selector,
//     contributes the `ips` of its `k8s.v1.cni.cncf.io/network-status` entries named `<service namespace>/X`
//     (Multus names attachments `<namespace>/<nad>`); `X` may itself be `<namespace>/<nad>` for a NAD of another
//     namespace (a DanmNet name cannot contain "/", so the two never clash). Only `network` reaches NADs:
//     TenantNetworks and ClusterNetworks exist only as danm objects.
//   * the pod must exist (and have the DanmEp's PodUID when it names one) and not have finished.
//
// Output follows the in-tree controllers (readiness, terminating, named target ports, per-port-set grouping) and
// DANM where those differ only in detail (hostname is pod.spec.hostname whenever set, both IP families go into
// the one Endpoints object). targetRef.kind is "Pod" (DANM wrote "pod"); targetRef carries no resourceVersion, so
// a pod status heartbeat does not rewrite every Endpoints.
import type { DanmServiceSelection, NetworkRef } from "../api/annotations.ts";
import { NetworkStatusAnnotation, TolerateUnreadyEndpointsAnnotation } from "../api/annotations.ts";
import type { DanmEp } from "../api/danm.ts";
import type {
  Endpoint,
  EndpointAddress,
  EndpointPort,
  Endpoints,
  EndpointSlice,
  EndpointSlicePort,
  EndpointSubset,
  Pod,
  Protocol,
  Service,
} from "../api/k8s.ts";
import type { OwnerReference } from "../api/meta.ts";
import { contains, formatIp, type Ip, parseCidr, parseIp } from "../net/ip.ts";

/** The controller name: EndpointSlice managed-by value, KEP-4770 endpoint-controller-name, field manager. */
export const ControllerName = "svcwatcher.danm.io";
export const ServiceNameLabel = "kubernetes.io/service-name";
export const ManagedByLabel = "endpointslice.kubernetes.io/managed-by";
/** Marks the Endpoints objects svcwatcher owns (the core Endpoints kind has no managed-by convention). */
export const EndpointsOwnerLabel = "endpoints.danm.io/managed-by";
/** Keeps the in-tree EndpointSlice mirroring controller away from our Endpoints: we write the slices ourselves. */
export const SkipMirrorLabel = "endpointslice.kubernetes.io/skip-mirror";
export const HeadlessLabel = "service.kubernetes.io/headless";
/** KEP-4770: a Service labelled with a controller name is served by that controller only. */
export const EndpointControllerNameLabel = "service.kubernetes.io/endpoint-controller-name";
export const OverCapacityAnnotation = "endpoints.kubernetes.io/over-capacity";
/** The in-tree Endpoints controller's ceiling; more addresses are truncated and the object is annotated. */
export const MaxEndpointsAddresses = 1000;
/** The in-tree default (the API allows up to 1000). */
export const DefaultMaxEndpointsPerSlice = 100;

export type AddressFamily = "IPv4" | "IPv6";

type Labels = { readonly [key: string]: string };

// ---- Which Services are ours --------------------------------------------------------------------------------

export type ServiceClass =
  | { readonly _tag: "Managed"; readonly selection: DanmServiceSelection }
  /** Not ours (any more): whatever we own for it is removed. `warning` is worth an Event on the Service. */
  | { readonly _tag: "NotManaged"; readonly warning?: string };

/** True when the annotations name any DANM selection key, i.e. the Service is meant for svcwatcher. */
export function hasDanmAnnotations(annotations: Labels | undefined): boolean {
  if (!annotations) return false;
  return Object.keys(annotations).some((k) =>
    /^danm(\.k8s)?\.io\/(selector|network|tenantNetwork|clusterNetwork)$/.test(k)
  );
}

/**
 * Ownership of a Service given its parsed selection (undefined: no DANM annotations). KEP-4770's label decides
 * first; without it a Service with `spec.selector` belongs to the in-tree controllers, as in DANM.
 */
export function classifyService(svc: Service, selection: DanmServiceSelection | undefined): ServiceClass {
  const controller = svc.metadata.labels?.[EndpointControllerNameLabel];
  if (controller !== undefined && controller !== ControllerName) return { _tag: "NotManaged" };
  if (selection === undefined) return { _tag: "NotManaged" };
  const hasSelector = Object.keys(svc.spec?.selector ?? {}).length > 0;
  if (hasSelector && controller !== ControllerName) {
    return {
      _tag: "NotManaged",
      warning: `the Service has spec.selector, so the in-tree controllers write its Endpoints and EndpointSlices; ` +
        `remove spec.selector or label it ${EndpointControllerNameLabel}=${ControllerName}`,
    };
  }
  return { _tag: "Managed", selection };
}

// ---- Addresses ----------------------------------------------------------------------------------------------

const specialRanges = [
  "0.0.0.0/32",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "224.0.0.0/24",
  "::/128",
  "::1/128",
  "fe80::/10",
  "ff02::/16",
].map((c) => parseCidr(c)!.cidr);

/**
 * The canonical form of an interface address ("10.0.0.5/24" → "10.0.0.5", IPv6 per RFC 5952, which the
 * apiserver insists on), or undefined for "", "none", "dynamic", garbage, and addresses the API refuses as
 * endpoints (unspecified, loopback, link-local, link-local multicast).
 */
export function endpointIp(
  text: string | undefined,
): { readonly ip: string; readonly family: AddressFamily } | undefined {
  if (!text) return undefined;
  const slash = text.indexOf("/");
  const ip: Ip | undefined = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip || specialRanges.some((c) => contains(c, ip))) return undefined;
  return { ip: formatIp(ip), family: ip.family === 4 ? "IPv4" : "IPv6" };
}

const labelsMatch = (selector: Labels, labels: Labels | undefined) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Whether a DanmEp's labels satisfy a Service's selector (the matching svcwatcher does, spec §6.2). */
export const selectorMatches = (selection: DanmServiceSelection, labels: Labels | undefined): boolean =>
  labelsMatch(selection.selector, labels);

/** DANM §6.2: the annotation kind must agree with the DanmEp's apiType ("" and absent mean DanmNet). */
export function danmEpOnNetwork(ep: DanmEp, ref: NetworkRef): boolean {
  if (ep.spec.NetworkName !== ref.name) return false;
  const apiType = ep.spec.apiType === undefined || ep.spec.apiType === "" ? "DanmNet" : ep.spec.apiType;
  return apiType === ref.kind;
}

/** The pod a DanmEp belongs to, when it still exists as the same pod (a recreated pod has another UID). */
function podOf(ep: DanmEp, pods: ReadonlyMap<string, Pod>): Pod | undefined {
  const pod = pods.get(ep.spec.Pod);
  if (!pod) return undefined;
  if (ep.spec.PodUID && pod.metadata.uid && ep.spec.PodUID !== pod.metadata.uid) return undefined;
  return pod;
}

const finished = (pod: Pod) => pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";

/** The network-status entry name a `danm.io/network` value stands for, in the Service's namespace. */
export const nadStatusName = (namespace: string, network: string): string =>
  network.includes("/") ? network : `${namespace}/${network}`;

/** The `ips` of a pod's network-status entry `name`; a malformed annotation yields nothing. */
function networkStatusIps(pod: Pod, name: string): ReadonlyArray<string> {
  const raw = pod.metadata.annotations?.[NetworkStatusAnnotation];
  if (!raw) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  const out: string[] = [];
  for (const e of parsed) {
    if (typeof e !== "object" || e === null) continue;
    const entry = e as { name?: unknown; ips?: unknown };
    if (entry.name !== name || !Array.isArray(entry.ips)) continue;
    for (const ip of entry.ips) if (typeof ip === "string") out.push(ip);
  }
  return out;
}

/** One selected address of one pod. */
export interface PodAddress {
  readonly pod: Pod;
  readonly ip: string;
  readonly family: AddressFamily;
}

/**
 * Every address the Service selects, once per (pod, IP), ordered by IP then pod name. `pods` are the pods of the
 * Service's namespace by name, `danmEps` the DanmEps of that namespace.
 */
export function selectAddresses(
  namespace: string,
  selection: DanmServiceSelection,
  pods: ReadonlyMap<string, Pod>,
  danmEps: Iterable<DanmEp>,
): ReadonlyArray<PodAddress> {
  const out = new Map<string, PodAddress>();
  const add = (pod: Pod, text: string | undefined) => {
    const a = endpointIp(text);
    if (a) out.set(`${pod.metadata.name}|${a.ip}`, { pod, ...a });
  };
  // pod name → networks (by index into selection.networks) it has a DanmEp on, selected or not.
  const attached = new Map<string, Set<number>>();
  for (const ep of danmEps) {
    const pod = podOf(ep, pods);
    if (!pod) continue;
    selection.networks.forEach((ref, i) => {
      if (!danmEpOnNetwork(ep, ref)) return;
      let s = attached.get(ep.spec.Pod);
      if (!s) attached.set(ep.spec.Pod, s = new Set());
      s.add(i);
      if (finished(pod) || !selectorMatches(selection, ep.metadata.labels)) return;
      add(pod, ep.spec.Interface.Address);
      add(pod, ep.spec.Interface.AddressIPv6);
    });
  }
  selection.networks.forEach((ref, i) => {
    if (ref.kind !== "DanmNet") return;
    const statusName = nadStatusName(namespace, ref.name);
    for (const [name, pod] of pods) {
      if (attached.get(name)?.has(i) || finished(pod) || !labelsMatch(selection.selector, pod.metadata.labels)) {
        continue;
      }
      for (const ip of networkStatusIps(pod, statusName)) add(pod, ip);
    }
  });
  return [...out.values()].sort((a, b) =>
    a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : (a.pod.metadata.name ?? "") < (b.pod.metadata.name ?? "") ? -1 : 1
  );
}

// ---- Endpoint state -------------------------------------------------------------------------------------------

export interface ResolvedPort {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly appProtocol?: string;
}

/** One address as both kinds will publish it. */
export interface DesiredEndpoint {
  readonly ip: string;
  readonly family: AddressFamily;
  readonly podName: string;
  readonly podNamespace: string;
  readonly podUid?: string;
  readonly nodeName?: string;
  readonly hostname?: string;
  /** EndpointSlice conditions. */
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /** Endpoints placement: in `addresses` (true), `notReadyAddresses` (false), or left out (undefined). */
  readonly endpointsReady: boolean | undefined;
  readonly ports: ReadonlyArray<ResolvedPort>;
  /** Identifies the port set: endpoints are grouped by it (subsets, slices). */
  readonly portKey: string;
}

export const podReady = (pod: Pod): boolean =>
  pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

/** publishNotReadyAddresses, or DANM's (and Kubernetes' deprecated) tolerate-unready annotation. */
export const publishNotReady = (svc: Service, selection: DanmServiceSelection): boolean =>
  svc.spec?.publishNotReadyAddresses === true || selection.tolerateUnreadyEndpoints;

/**
 * The Service's ports as this pod serves them: a numeric targetPort as is, a named one looked up among the pod's
 * container ports with the same protocol (a pod without that port does not serve it), none: the port itself.
 */
export function resolvePorts(svc: Service, pod: Pod): ReadonlyArray<ResolvedPort> {
  const out: ResolvedPort[] = [];
  for (const sp of svc.spec?.ports ?? []) {
    const protocol = sp.protocol ?? "TCP";
    let port: number | undefined;
    const target = sp.targetPort;
    if (typeof target === "string" && target !== "") {
      for (const c of [...pod.spec.containers, ...(pod.spec.initContainers ?? [])]) {
        const found = c.ports?.find((p) => p.name === target && (p.protocol ?? "TCP") === protocol);
        if (found) {
          port = found.containerPort;
          break;
        }
      }
    } else port = typeof target === "number" && target > 0 ? target : sp.port;
    if (port === undefined) continue;
    out.push({
      name: sp.name ?? "",
      port,
      protocol,
      ...(sp.appProtocol ? { appProtocol: sp.appProtocol } : {}),
    });
  }
  return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.port - b.port);
}

/** The endpoint state of every selected address (readiness per the in-tree controllers, spec §6.3). */
export function desiredEndpoints(
  svc: Service,
  selection: DanmServiceSelection,
  addresses: ReadonlyArray<PodAddress>,
): ReadonlyArray<DesiredEndpoint> {
  const publish = publishNotReady(svc, selection);
  const ports = new Map<string, ReadonlyArray<ResolvedPort>>();
  return addresses.map(({ pod, ip, family }) => {
    const name = pod.metadata.name ?? "";
    let p = ports.get(name);
    if (!p) ports.set(name, p = resolvePorts(svc, pod));
    const serving = podReady(pod);
    const terminating = pod.metadata.deletionTimestamp !== undefined;
    return {
      ip,
      family,
      podName: name,
      podNamespace: pod.metadata.namespace ?? svc.metadata.namespace ?? "",
      ...(pod.metadata.uid ? { podUid: pod.metadata.uid } : {}),
      ...(pod.spec.nodeName ? { nodeName: pod.spec.nodeName } : {}),
      ...(pod.spec.hostname ? { hostname: pod.spec.hostname } : {}),
      ready: publish || (serving && !terminating),
      serving,
      terminating,
      // The Endpoints controller drops terminating pods unless not-ready ones are published.
      endpointsReady: terminating && !publish ? undefined : publish || serving,
      ports: p,
      portKey: JSON.stringify(p),
    };
  });
}

// ---- Metadata shared by both kinds --------------------------------------------------------------------------

function ownerReferences(svc: Service): ReadonlyArray<OwnerReference> | undefined {
  if (!svc.metadata.uid || !svc.metadata.name) return undefined;
  return [{ apiVersion: "v1", kind: "Service", name: svc.metadata.name, uid: svc.metadata.uid, controller: true }];
}

const isHeadless = (svc: Service) => svc.spec?.clusterIP === "None";

/** The Service's labels (as the in-tree controllers copy them) plus `own`, which win. */
function copiedLabels(svc: Service, reserved: ReadonlyArray<string>, own: Labels): Labels {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(svc.metadata.labels ?? {})) if (!reserved.includes(k)) out[k] = v;
  if (isHeadless(svc)) out[HeadlessLabel] = "";
  return { ...out, ...own };
}

const targetRef = (e: DesiredEndpoint) => ({
  kind: "Pod",
  namespace: e.podNamespace,
  name: e.podName,
  ...(e.podUid ? { uid: e.podUid } : {}),
});

// ---- Endpoints ----------------------------------------------------------------------------------------------

export const endpointsLabels = (svc: Service): Labels =>
  copiedLabels(svc, [HeadlessLabel], { [SkipMirrorLabel]: "true", [EndpointsOwnerLabel]: ControllerName });

/**
 * The Endpoints object for a managed Service: one subset per distinct port set (addresses of pods that resolve
 * none of the Service's ports are left out, as by the in-tree controller), sorted, at most 1000 addresses.
 * Annotations: DANM copied the Service's; we copy its DANM ones (tools read the selection back from there).
 */
export function buildEndpoints(svc: Service, endpoints: ReadonlyArray<DesiredEndpoint>): Endpoints {
  const hasPorts = (svc.spec?.ports ?? []).length > 0;
  const included = endpoints.filter((e) => e.endpointsReady !== undefined && (!hasPorts || e.ports.length > 0));
  // Over capacity: keep ready addresses first, as the in-tree controller does.
  const ordered = [...included.filter((e) => e.endpointsReady), ...included.filter((e) => !e.endpointsReady)];
  const kept = ordered.slice(0, MaxEndpointsAddresses);
  const groups = new Map<
    string,
    { ports: ReadonlyArray<ResolvedPort>; ready: DesiredEndpoint[]; not: DesiredEndpoint[] }
  >();
  for (const e of kept) {
    let g = groups.get(e.portKey);
    if (!g) groups.set(e.portKey, g = { ports: e.ports, ready: [], not: [] });
    (e.endpointsReady ? g.ready : g.not).push(e);
  }
  const address = (e: DesiredEndpoint): EndpointAddress => ({
    ip: e.ip,
    ...(e.hostname ? { hostname: e.hostname } : {}),
    ...(e.nodeName ? { nodeName: e.nodeName } : {}),
    targetRef: targetRef(e),
  });
  const byAddress = (a: DesiredEndpoint, b: DesiredEndpoint) =>
    a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.podName < b.podName ? -1 : a.podName > b.podName ? 1 : 0;
  const subsets: EndpointSubset[] = [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, g]) => ({
      ...(g.ready.length ? { addresses: g.ready.sort(byAddress).map(address) } : {}),
      ...(g.not.length ? { notReadyAddresses: g.not.sort(byAddress).map(address) } : {}),
      ...(g.ports.length
        ? {
          ports: g.ports.map((p): EndpointPort => ({
            ...(p.name ? { name: p.name } : {}),
            port: p.port,
            protocol: p.protocol,
            ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
          })),
        }
        : {}),
    }));
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(svc.metadata.annotations ?? {})) {
    if (/^danm(\.k8s)?\.io\//.test(k) || k === TolerateUnreadyEndpointsAnnotation) annotations[k] = v;
  }
  if (included.length > kept.length) annotations[OverCapacityAnnotation] = "truncated";
  const owners = ownerReferences(svc);
  return {
    apiVersion: "v1",
    kind: "Endpoints",
    metadata: {
      name: svc.metadata.name,
      namespace: svc.metadata.namespace,
      labels: endpointsLabels(svc),
      ...(Object.keys(annotations).length ? { annotations } : {}),
      ...(owners ? { ownerReferences: owners } : {}),
    },
    ...(subsets.length ? { subsets } : {}),
  };
}

// ---- EndpointSlices -------------------------------------------------------------------------------------------

export const sliceLabels = (svc: Service): Labels =>
  copiedLabels(svc, [ServiceNameLabel, ManagedByLabel, HeadlessLabel], {
    [ServiceNameLabel]: svc.metadata.name ?? "",
    [ManagedByLabel]: ControllerName,
  });

/** Endpoints of one address family and one port set: they share slices. */
export interface SliceGroup {
  readonly family: AddressFamily;
  readonly ports: ReadonlyArray<ResolvedPort>;
  /** Stable part of the slice names: family and a hash of the port set. */
  readonly prefix: string;
  readonly endpoints: ReadonlyArray<Endpoint>;
}

/** FNV-1a, 32 bit: a short, stable name component for a port set. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

export const endpointKey = (e: Endpoint): string =>
  `${e.addresses[0] ?? ""}|${e.targetRef?.uid ?? e.targetRef?.name ?? ""}`;

export function sliceGroups(svc: Service, endpoints: ReadonlyArray<DesiredEndpoint>): ReadonlyArray<SliceGroup> {
  const groups = new Map<
    string,
    { family: AddressFamily; ports: ReadonlyArray<ResolvedPort>; endpoints: Endpoint[] }
  >();
  for (const e of endpoints) {
    const k = `${e.family}|${e.portKey}`;
    let g = groups.get(k);
    if (!g) groups.set(k, g = { family: e.family, ports: e.ports, endpoints: [] });
    g.endpoints.push({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
      ...(e.hostname ? { hostname: e.hostname } : {}),
      ...(e.nodeName ? { nodeName: e.nodeName } : {}),
      targetRef: targetRef(e),
    });
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, g]) => ({
    ...g,
    prefix: `${svc.metadata.name}-danm-${g.family === "IPv4" ? "v4" : "v6"}-${fnv1a(k)}-`,
  }));
}

const slicePorts = (ports: ReadonlyArray<ResolvedPort>): ReadonlyArray<EndpointSlicePort> =>
  ports.map((p) => ({
    name: p.name,
    port: p.port,
    protocol: p.protocol,
    ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
  }));

/** What to write so that the owned slices of one Service hold exactly the desired endpoints. */
export interface SlicePlan {
  readonly create: ReadonlyArray<EndpointSlice>;
  /** Full replacements carrying the current uid/resourceVersion. */
  readonly update: ReadonlyArray<EndpointSlice>;
  readonly delete: ReadonlyArray<EndpointSlice>;
  /** Every slice as it should be afterwards (for tests and metrics). */
  readonly result: ReadonlyArray<EndpointSlice>;
}

const byEndpoint = (a: Endpoint, b: Endpoint) => {
  const ka = endpointKey(a), kb = endpointKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/**
 * Packs each group into slices of at most `maxPerSlice` endpoints with little churn: an endpoint stays in the
 * slice that holds it, new ones fill the existing slices of their group first, then new slices named
 * `<prefix><lowest free index>`. Slices left empty, slices of groups that no longer exist and duplicate
 * endpoints are removed. A slice is rewritten only when its managed content differs, so an unchanged state
 * yields an empty plan.
 */
export function planSlices(
  svc: Service,
  groups: ReadonlyArray<SliceGroup>,
  existing: ReadonlyArray<EndpointSlice>,
  maxPerSlice: number = DefaultMaxEndpointsPerSlice,
): SlicePlan {
  const labels = sliceLabels(svc);
  const owners = ownerReferences(svc);
  const create: EndpointSlice[] = [],
    update: EndpointSlice[] = [],
    del: EndpointSlice[] = [],
    result: EndpointSlice[] = [];
  const claimed = new Set<EndpointSlice>();
  for (const g of groups) {
    const indexOf = (s: EndpointSlice): number | undefined => {
      const name = s.metadata.name ?? "";
      if (!name.startsWith(g.prefix)) return undefined;
      const rest = name.slice(g.prefix.length);
      return /^(0|[1-9][0-9]*)$/.test(rest) ? Number(rest) : undefined;
    };
    const mine = existing
      .filter((s) => indexOf(s) !== undefined)
      .sort((a, b) => indexOf(a)! - indexOf(b)!);
    mine.forEach((s) => claimed.add(s));
    const wanted = new Map(g.endpoints.map((e) => [endpointKey(e), e]));
    const placed = new Set<string>();
    const slots = mine.map((s) => {
      const keep: Endpoint[] = [];
      for (const e of s.endpoints) {
        const k = endpointKey(e);
        const want = wanted.get(k);
        if (!want || placed.has(k) || keep.length >= maxPerSlice) continue;
        placed.add(k);
        keep.push(want);
      }
      return { existing: s as EndpointSlice | undefined, index: indexOf(s)!, endpoints: keep };
    });
    const rest = g.endpoints.filter((e) => !placed.has(endpointKey(e))).sort(byEndpoint);
    for (const slot of slots) {
      while (slot.endpoints.length < maxPerSlice && rest.length) slot.endpoints.push(rest.shift()!);
    }
    const used = new Set(slots.map((s) => s.index));
    let next = 0;
    while (rest.length) {
      while (used.has(next)) next++;
      used.add(next);
      slots.push({ existing: undefined, index: next, endpoints: rest.splice(0, maxPerSlice) });
    }
    for (const slot of slots) {
      if (slot.endpoints.length === 0) {
        if (slot.existing) del.push(slot.existing);
        continue;
      }
      const body: EndpointSlice = {
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: {
          name: `${g.prefix}${slot.index}`,
          namespace: svc.metadata.namespace,
          labels,
          ...(owners ? { ownerReferences: owners } : {}),
        },
        addressType: g.family,
        endpoints: [...slot.endpoints].sort(byEndpoint),
        ports: slicePorts(g.ports),
      };
      const cur = slot.existing;
      if (!cur) {
        create.push(body);
        result.push(body);
      } else if (sameSlice(cur, body)) {
        result.push(cur);
      } else {
        const replaced: EndpointSlice = {
          ...body,
          metadata: {
            ...cur.metadata,
            labels,
            ...(owners ? { ownerReferences: owners } : {}),
          },
        };
        update.push(replaced);
        result.push(replaced);
      }
    }
  }
  for (const s of existing) if (!claimed.has(s)) del.push(s);
  return { create, update, delete: del, result };
}

// ---- Comparison ---------------------------------------------------------------------------------------------

/** JSON with sorted keys and undefined dropped: equal content ⇔ equal text. */
export function canonical(v: unknown): string {
  return JSON.stringify(
    v,
    (_k, x) =>
      x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(
          Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
        : x,
  );
}

const managedMeta = (
  m: { labels?: Labels; annotations?: Labels; ownerReferences?: ReadonlyArray<OwnerReference> },
) => ({
  labels: m.labels ?? {},
  annotations: m.annotations ?? {},
  ownerReferences: m.ownerReferences ?? [],
});

/** The fields svcwatcher manages on a slice (labels, owners, type, endpoints, ports) are equal. */
export function sameSlice(a: EndpointSlice, b: EndpointSlice): boolean {
  const pick = (s: EndpointSlice) => ({
    labels: s.metadata.labels ?? {},
    ownerReferences: s.metadata.ownerReferences ?? [],
    addressType: s.addressType,
    endpoints: s.endpoints,
    ports: s.ports ?? [],
  });
  return canonical(pick(a)) === canonical(pick(b));
}

/** Labels, annotations, owners and subsets are equal. */
export function sameEndpoints(a: Endpoints, b: Endpoints): boolean {
  const pick = (e: Endpoints) => ({ meta: managedMeta(e.metadata), subsets: e.subsets ?? [] });
  return canonical(pick(a)) === canonical(pick(b));
}

/**
 * Endpoints svcwatcher may take over: its own, or those DANM's svcwatcher wrote (they carry the Service's DANM
 * annotations, spec §6.3). Anything else belongs to someone else and is left alone.
 */
export const adoptableEndpoints = (e: Endpoints): boolean =>
  e.metadata.labels?.[EndpointsOwnerLabel] === ControllerName || hasDanmAnnotations(e.metadata.annotations);
