// The annotations danm reads and writes: DANM's pod `interfaces` and Service selection annotations (spec §2.6,
// §2.7, under both the `danm.io/` and the v4.3.0 `danm.k8s.io/` prefixes) and the NPWG pod annotations
// `k8s.v1.cni.cncf.io/networks` (read) and `k8s.v1.cni.cncf.io/network-status` (written).
//
// Every failure is an AnnotationError naming the annotation, the entry (0-based) and the field.
//
// Case of keys in `interfaces` entries: DANM decodes them with Go's encoding/json, which matches object keys to
// fields case-insensitively, so `{"Network":"a","IP":"dynamic"}` works there. We accept the same spellings
// (compatibility wins; a pod that starts under DANM must start under danm), but refuse two spellings of one key
// in the same entry, where Go would silently keep the last. Unknown keys are refused, as DANM does
// (DisallowUnknownFields). A null value counts as absent, as in Go.
//
// When both the `danm.io/` and the `danm.k8s.io/` spelling of an annotation are present they must agree; DANM
// picked one of them at random (map order), we refuse to guess.
import { Effect, Schema, SchemaParser } from "effect";
import { type NetworkKind, Routes } from "./danm.ts";
import { type IpFamily, isCidr, isIP, isIPv4, isIPv6, isMac, issueLeaves } from "./formats.ts";

export const InterfacesAnnotation = "danm.io/interfaces";
export const LegacyInterfacesAnnotation = "danm.k8s.io/interfaces";
export const TolerateUnreadyEndpointsAnnotation = "service.alpha.kubernetes.io/tolerate-unready-endpoints";
export const NetworksAnnotation = "k8s.v1.cni.cncf.io/networks";
export const NetworkStatusAnnotation = "k8s.v1.cni.cncf.io/network-status";
/** The deprecated spelling Multus once wrote; read by old tools only. */
export const LegacyNetworkStatusAnnotation = "k8s.v1.cni.cncf.io/networks-status";

const prefixes = ["danm.io", "danm.k8s.io"] as const;

export class AnnotationError extends Schema.TaggedError<AnnotationError>()("AnnotationError", {
  annotation: Schema.String,
  /** 0-based index of the offending list entry, when the value is a list. */
  entry: Schema.optionalKey(Schema.Int),
  field: Schema.optionalKey(Schema.String),
  reason: Schema.String,
}) {
  override get message(): string {
    const where = [
      `annotation ${this.annotation}`,
      ...(this.entry === undefined ? [] : [`entry ${this.entry}`]),
      ...(this.field === undefined ? [] : [`field ${this.field}`]),
    ].join(", ");
    return `${where}: ${this.reason}`;
  }
}

type Annotations = { readonly [key: string]: string } | undefined;

const fail = (annotation: string, reason: string, entry?: number, field?: string) =>
  Effect.fail(
    new AnnotationError({
      annotation,
      reason,
      ...(entry === undefined ? {} : { entry }),
      ...(field === undefined ? {} : { field }),
    }),
  );

function amend(e: AnnotationError, patch: { readonly field?: string; readonly reason?: string }): AnnotationError {
  const field = patch.field ?? e.field;
  return new AnnotationError({
    annotation: e.annotation,
    reason: patch.reason ?? e.reason,
    ...(e.entry === undefined ? {} : { entry: e.entry }),
    ...(field === undefined ? {} : { field }),
  });
}

/** A Schema path as a field reference: `portMappings[0].hostPort`, `proutes["10.0.0.0/8"]`. */
function fieldName(segments: ReadonlyArray<PropertyKey>): string | undefined {
  if (segments.length === 0) return undefined;
  const [head, ...rest] = segments;
  return String(head) +
    rest.map((s) =>
      typeof s === "number"
        ? `[${s}]`
        : /^[A-Za-z_][\w-]*$/.test(String(s))
        ? `.${String(s)}`
        : `[${JSON.stringify(String(s))}]`
    ).join("");
}

/** Decodes with `schema`, failing with the first problem located at entry/field. */
function decodeEntry<A, I>(
  schema: Schema.Codec<A, I>,
  input: unknown,
  annotation: string,
  entry?: number,
): Effect.Effect<A, AnnotationError> {
  return SchemaParser.decodeUnknownEffect(schema)(input, { reportInput: true }).pipe(
    Effect.mapError((issue) => {
      const [leaf] = issueLeaves(issue);
      const field = fieldName(leaf?.segments ?? []);
      return new AnnotationError({
        annotation,
        reason: leaf?.message ?? "invalid value",
        ...(entry === undefined ? {} : { entry }),
        ...(field === undefined ? {} : { field }),
      });
    }),
  );
}

function parseJson(annotation: string, value: string): Effect.Effect<unknown, AnnotationError> {
  return Effect.try({
    try: (): unknown => JSON.parse(value),
    catch: (e) => new AnnotationError({ annotation, reason: `not valid JSON: ${(e as Error).message}` }),
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The value under the `danm.io/` or `danm.k8s.io/` spelling of `name`, or undefined when neither is set.
 * Returns the key it was found under, for error messages.
 */
function prefixed(
  annotations: Annotations,
  name: string,
): Effect.Effect<{ key: string; value: string } | undefined, AnnotationError> {
  const found = prefixes.flatMap((p) => {
    const key = `${p}/${name}`;
    const value = annotations?.[key];
    return value === undefined ? [] : [{ key, value }];
  });
  if (found.length === 2 && found[0].value !== found[1].value) {
    return fail(found[0].key, `differs from ${found[1].key}; set only one of them`);
  }
  return Effect.succeed(found[0]);
}

// ---- danm.io/interfaces -----------------------------------------------------------------------------------------

/** An entry of the interfaces annotation with its keys in DANM's canonical spelling. */
export const DanmInterfaceEntry = Schema.Struct({
  network: Schema.optionalKey(Schema.String),
  tenantNetwork: Schema.optionalKey(Schema.String),
  clusterNetwork: Schema.optionalKey(Schema.String),
  ip: Schema.optionalKey(Schema.String),
  ip6: Schema.optionalKey(Schema.String),
  proutes: Schema.optionalKey(Routes),
  proutes6: Schema.optionalKey(Routes),
  // Accepted but undocumented upstream (Go fields without JSON tags). Device becomes DanmEp.Interface.DeviceID on
  // non-device networks; DANM overwrites the other two itself, so danm ignores them.
  Device: Schema.optionalKey(Schema.String),
  DefaultIfaceName: Schema.optionalKey(Schema.String),
  SequenceId: Schema.optionalKey(Schema.Int),
});
export type DanmInterfaceEntry = typeof DanmInterfaceEntry.Type;

const entryKeys = Object.keys(DanmInterfaceEntry.fields) as ReadonlyArray<keyof DanmInterfaceEntry>;
const entryKeyByFolded = new Map(entryKeys.map((k) => [k.toLowerCase(), k]));

/** The network an entry (or a Service) refers to: its API kind and name. */
export interface NetworkRef {
  readonly kind: NetworkKind;
  readonly name: string;
}

const referenceKeys = [
  ["network", "DanmNet"],
  ["tenantNetwork", "TenantNetwork"],
  ["clusterNetwork", "ClusterNetwork"],
] as const satisfies ReadonlyArray<readonly [keyof DanmInterfaceEntry, NetworkKind]>;

/** One requested pod interface, normalized. */
export interface InterfaceRequest {
  readonly network: NetworkRef;
  /** "dynamic", "none" or a static IPv4 (a "/prefix" suffix is allowed and ignored, as in DANM); absent = none. */
  readonly ip?: string;
  /** Same for IPv6. */
  readonly ip6?: string;
  /** Policy routes, destination CIDR → gateway, installed into the network's rt_tables. */
  readonly proutes: { readonly [dst: string]: string };
  readonly proutes6: { readonly [dst: string]: string };
  /** A device ID requested for a non-device-pool network (DANM's undocumented `Device`). */
  readonly device?: string;
}

function checkAddress(value: string, family: IpFamily): boolean {
  if (value === "dynamic" || value === "none") return true;
  const slash = value.indexOf("/");
  return slash < 0 ? isIP(value, family) : isCidr(value, family);
}

function checkRoutes(
  routes: { readonly [dst: string]: string } | undefined,
  family: IpFamily,
  annotation: string,
  entry: number,
  field: string,
): Effect.Effect<void, AnnotationError> {
  const v = family === "ipv4" ? "IPv4" : "IPv6";
  for (const [dst, gw] of Object.entries(routes ?? {})) {
    const at = `${field}[${JSON.stringify(dst)}]`;
    if (!isCidr(dst, family)) return fail(annotation, `destination "${dst}" is not an ${v} CIDR`, entry, at);
    if (!(family === "ipv4" ? isIPv4(gw) : isIPv6(gw))) {
      return fail(annotation, `gateway "${gw}" is not an ${v} address`, entry, at);
    }
  }
  return Effect.void;
}

function parseInterfaceEntry(
  annotation: string,
  raw: unknown,
  entry: number,
): Effect.Effect<InterfaceRequest, AnnotationError> {
  return Effect.gen(function* () {
    if (!isRecord(raw)) return yield* fail(annotation, "must be a JSON object", entry);
    const canonical: Record<string, unknown> = {};
    const spelled: Record<string, string> = {};
    for (const [key, value] of Object.entries(raw)) {
      const name = entryKeyByFolded.get(key.toLowerCase());
      if (name === undefined) {
        return yield* fail(annotation, `unknown key (accepted: ${entryKeys.join(", ")})`, entry, key);
      }
      if (spelled[name] !== undefined) {
        return yield* fail(
          annotation,
          `the same key as "${spelled[name]}" (keys match case-insensitively)`,
          entry,
          key,
        );
      }
      spelled[name] = key;
      if (value !== null) canonical[name] = value;
    }
    const e = yield* decodeEntry(DanmInterfaceEntry, canonical, annotation, entry).pipe(
      // Report the field as the user spelled it.
      Effect.mapError((err) => {
        const head = err.field?.match(/^[A-Za-z0-9]+/)?.[0];
        return head && spelled[head] && spelled[head] !== head
          ? amend(err, { field: spelled[head] + err.field!.slice(head.length) })
          : err;
      }),
    );
    const refs = referenceKeys.filter(([k]) => (e[k] ?? "") !== "");
    if (refs.length !== 1) {
      const found = refs.length === 0 ? "none" : refs.map(([k]) => spelled[k]).join(", ");
      return yield* fail(
        annotation,
        `exactly one of "network", "tenantNetwork", "clusterNetwork" must be set (found: ${found})`,
        entry,
        refs.length === 0 ? undefined : spelled[refs[1][0]],
      );
    }
    const [refKey, kind] = refs[0];
    for (const [k, family] of [["ip", "ipv4"], ["ip6", "ipv6"]] as const) {
      const v = e[k];
      if (v !== undefined && v !== "" && !checkAddress(v, family)) {
        const what = family === "ipv4" ? "an IPv4 address" : "an IPv6 address";
        return yield* fail(annotation, `must be "dynamic", "none" or ${what}, got "${v}"`, entry, spelled[k]);
      }
    }
    yield* checkRoutes(e.proutes, "ipv4", annotation, entry, spelled["proutes"] ?? "proutes");
    yield* checkRoutes(e.proutes6, "ipv6", annotation, entry, spelled["proutes6"] ?? "proutes6");
    return {
      network: { kind, name: e[refKey]! },
      ...(e.ip ? { ip: e.ip } : {}),
      ...(e.ip6 ? { ip6: e.ip6 } : {}),
      proutes: e.proutes ?? {},
      proutes6: e.proutes6 ?? {},
      ...(e.Device ? { device: e.Device } : {}),
    };
  });
}

/**
 * Parses the value of an interfaces annotation. An empty list (or an empty value) means "attach the default
 * network" (spec §4.3), which is the caller's business.
 */
export function parseInterfaces(
  value: string,
  annotation: string = InterfacesAnnotation,
): Effect.Effect<ReadonlyArray<InterfaceRequest>, AnnotationError> {
  return Effect.gen(function* () {
    if (value.trim() === "") return [];
    const json = yield* parseJson(annotation, value);
    if (!Array.isArray(json)) return yield* fail(annotation, "must be a JSON array of interface objects");
    return yield* Effect.forEach(json, (raw, i) => parseInterfaceEntry(annotation, raw, i));
  });
}

/** The interfaces a pod asks for; an empty list when it carries no interfaces annotation. */
export function podInterfaces(
  annotations: Annotations,
): Effect.Effect<ReadonlyArray<InterfaceRequest>, AnnotationError> {
  return Effect.flatMap(
    prefixed(annotations, "interfaces"),
    (found) => found ? parseInterfaces(found.value, found.key) : Effect.succeed([]),
  );
}

/** The canonical JSON text of interface requests (what `podInterfaces` reads back unchanged). */
export function encodeInterfaces(requests: ReadonlyArray<InterfaceRequest>): string {
  const keyOf: Record<NetworkKind, string> = {
    DanmNet: "network",
    TenantNetwork: "tenantNetwork",
    ClusterNetwork: "clusterNetwork",
  };
  return JSON.stringify(requests.map((r) => ({
    [keyOf[r.network.kind]]: r.network.name,
    ...(r.ip ? { ip: r.ip } : {}),
    ...(r.ip6 ? { ip6: r.ip6 } : {}),
    ...(Object.keys(r.proutes).length ? { proutes: r.proutes } : {}),
    ...(Object.keys(r.proutes6).length ? { proutes6: r.proutes6 } : {}),
    ...(r.device ? { Device: r.device } : {}),
  })));
}

// ---- Service annotations ----------------------------------------------------------------------------------------

/** What svcwatcher needs from a Service's annotations. */
export interface DanmServiceSelection {
  /** Matched against DanmEp labels; all pairs must match. Never empty. */
  readonly selector: { readonly [label: string]: string };
  /** A DanmEp on any of these networks is selected. Never empty. */
  readonly networks: ReadonlyArray<NetworkRef>;
  readonly tolerateUnreadyEndpoints: boolean;
}

const LabelMap = Schema.Record(Schema.String, Schema.String);

/** Go's strconv.ParseBool, which Kubernetes uses for this annotation; anything else is false. */
function parseBool(v: string | undefined): boolean {
  return v !== undefined && ["1", "t", "T", "TRUE", "true", "True"].includes(v);
}

/**
 * The DANM selection of a Service, or undefined when the Service carries no DANM selection annotation at all
 * (then it is not svcwatcher's).
 */
export function serviceSelection(
  annotations: Annotations,
): Effect.Effect<DanmServiceSelection | undefined, AnnotationError> {
  return Effect.gen(function* () {
    const selector = yield* prefixed(annotations, "selector");
    const networks: NetworkRef[] = [];
    const networkKeys: string[] = [];
    for (const [name, kind] of referenceKeys) {
      const found = yield* prefixed(annotations, name);
      if (found === undefined) continue;
      networkKeys.push(found.key);
      if (found.value !== "") networks.push({ kind, name: found.value });
    }
    if (selector === undefined) {
      if (networkKeys.length === 0) return undefined;
      return yield* fail(networkKeys[0], "needs a danm.io/selector annotation next to it");
    }
    const json = yield* parseJson(selector.key, selector.value);
    const labels = yield* decodeEntry(LabelMap, json, selector.key).pipe(
      Effect.mapError((e) => amend(e, { reason: `must be a JSON object of label names to values: ${e.reason}` })),
    );
    if (Object.keys(labels).length === 0) return yield* fail(selector.key, "must name at least one label");
    if (networks.length === 0) {
      return yield* fail(
        selector.key,
        "needs at least one of danm.io/network, danm.io/tenantNetwork, danm.io/clusterNetwork",
      );
    }
    return {
      selector: labels,
      networks,
      tolerateUnreadyEndpoints: parseBool(annotations?.[TolerateUnreadyEndpointsAnnotation]),
    };
  });
}

// ---- k8s.v1.cni.cncf.io/networks ---------------------------------------------------------------------------------

const IntField = Schema.Int;

/** One element of the NPWG network selection annotation (JSON form); unknown keys are ignored, as by Multus. */
export const NetworkSelectionElement = Schema.Struct({
  name: Schema.String.check(Schema.isMinLength(1)),
  namespace: Schema.optionalKey(Schema.String),
  ips: Schema.optionalKey(Schema.Array(Schema.String)),
  mac: Schema.optionalKey(Schema.String),
  "infiniband-guid": Schema.optionalKey(Schema.String),
  interface: Schema.optionalKey(Schema.String),
  portMappings: Schema.optionalKey(Schema.Array(Schema.Struct({
    hostPort: IntField,
    containerPort: IntField,
    protocol: Schema.optionalKey(Schema.String),
    hostIP: Schema.optionalKey(Schema.String),
  }))),
  bandwidth: Schema.optionalKey(Schema.Struct({
    ingressRate: Schema.optionalKey(IntField),
    ingressBurst: Schema.optionalKey(IntField),
    egressRate: Schema.optionalKey(IntField),
    egressBurst: Schema.optionalKey(IntField),
  })),
  "cni-args": Schema.optionalKey(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown))),
  "default-route": Schema.optionalKey(Schema.Array(Schema.String)),
  "ipam-claim-reference": Schema.optionalKey(Schema.String),
  /** Multus-internal: a device picked for the attachment. */
  deviceID: Schema.optionalKey(Schema.String),
});
export type NetworkSelectionElement = typeof NetworkSelectionElement.Type;

// Multus' check on text-form items: "units of the DNS-1123 label format".
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function parseTextItem(item: string, entry: number): Effect.Effect<NetworkSelectionElement, AnnotationError> {
  const a = NetworksAnnotation;
  if (item === "") return fail(a, "empty item (a stray comma?)", entry);
  const slash = item.split("/");
  if (slash.length > 2) return fail(a, `"${item}" has more than one "/"`, entry);
  const [namespace, rest] = slash.length === 2 ? [slash[0].trim(), slash[1]] : [undefined, slash[0]];
  const at = rest.split("@");
  if (at.length > 2) return fail(a, `"${item}" has more than one "@"`, entry);
  const name = at[0].trim(), iface = at.length === 2 ? at[1].trim() : undefined;
  const parts: Array<[string, string | undefined]> = [["namespace", namespace], ["name", name], ["interface", iface]];
  for (const [field, v] of parts) {
    if (v === undefined) continue;
    if (!dnsLabel.test(v)) {
      return fail(
        a,
        `"${v}" must consist of lower case alphanumerics and "-", starting and ending alphanumeric`,
        entry,
        field,
      );
    }
  }
  return Effect.succeed({
    name,
    ...(namespace === undefined ? {} : { namespace }),
    ...(iface === undefined ? {} : { interface: iface }),
  });
}

function checkSelection(e: NetworkSelectionElement, entry: number): Effect.Effect<void, AnnotationError> {
  const a = NetworksAnnotation;
  if (e.mac !== undefined && e.mac !== "" && !isMac(e.mac)) {
    return fail(a, `"${e.mac}" is not a MAC address`, entry, "mac");
  }
  const guid = e["infiniband-guid"];
  if (guid !== undefined && guid !== "" && !isMac(guid)) {
    return fail(a, `"${guid}" is not an InfiniBand GUID`, entry, "infiniband-guid");
  }
  for (const [i, ip] of (e.ips ?? []).entries()) {
    if (!(ip.includes("/") ? isCidr(ip) : isIP(ip))) return fail(a, `"${ip}" is not an IP address`, entry, `ips[${i}]`);
  }
  for (const [i, gw] of (e["default-route"] ?? []).entries()) {
    if (!isIP(gw)) return fail(a, `"${gw}" is not an IP address`, entry, `default-route[${i}]`);
  }
  if (e.interface !== undefined && (e.interface.length > 15 || /[/\s:]/.test(e.interface))) {
    return fail(a, `"${e.interface}" is not a valid Linux interface name`, entry, "interface");
  }
  return Effect.void;
}

/**
 * Parses `k8s.v1.cni.cncf.io/networks`: the text form (`net1`, `ns/net1`, `net1@eth5`, comma separated) or the
 * JSON form (told apart as Multus does: any of `[`, `{`, `"` means JSON). Elements without a namespace get
 * `defaultNamespace` when one is given.
 */
export function parseNetworkSelection(
  value: string,
  defaultNamespace?: string,
): Effect.Effect<ReadonlyArray<NetworkSelectionElement>, AnnotationError> {
  const a = NetworksAnnotation;
  return Effect.gen(function* () {
    if (value.trim() === "") return [];
    let elements: ReadonlyArray<NetworkSelectionElement>;
    if (/[[{"]/.test(value)) {
      const json = yield* parseJson(a, value);
      if (!Array.isArray(json)) return yield* fail(a, "the JSON form must be an array of network selection objects");
      elements = yield* Effect.forEach(
        json,
        (raw, i) =>
          isRecord(raw) ? decodeEntry(NetworkSelectionElement, raw, a, i) : fail(a, "must be a JSON object", i),
      );
    } else {
      elements = yield* Effect.forEach(value.split(","), (item, i) => parseTextItem(item.trim(), i));
    }
    yield* Effect.forEach(elements, (e, i) => checkSelection(e, i), { discard: true });
    return defaultNamespace === undefined
      ? elements
      : elements.map((e) => e.namespace ? e : { ...e, namespace: defaultNamespace });
  });
}

// ---- k8s.v1.cni.cncf.io/network-status ---------------------------------------------------------------------------

export const DeviceInfo = Schema.Struct({
  type: Schema.optionalKey(Schema.String),
  version: Schema.optionalKey(Schema.String),
  pci: Schema.optionalKey(Schema.Struct({
    "pci-address": Schema.optionalKey(Schema.String),
    "vhost-net": Schema.optionalKey(Schema.String),
    "rdma-device": Schema.optionalKey(Schema.String),
    "pf-pci-address": Schema.optionalKey(Schema.String),
  })),
  vdpa: Schema.optionalKey(Schema.Struct({
    "parent-device": Schema.optionalKey(Schema.String),
    driver: Schema.optionalKey(Schema.String),
    path: Schema.optionalKey(Schema.String),
    "pci-address": Schema.optionalKey(Schema.String),
    "pf-pci-address": Schema.optionalKey(Schema.String),
  })),
  "vhost-user": Schema.optionalKey(Schema.Struct({
    mode: Schema.optionalKey(Schema.String),
    path: Schema.optionalKey(Schema.String),
  })),
  memif: Schema.optionalKey(Schema.Struct({
    role: Schema.optionalKey(Schema.String),
    path: Schema.optionalKey(Schema.String),
    mode: Schema.optionalKey(Schema.String),
  })),
});

/** One attachment in `k8s.v1.cni.cncf.io/network-status` (NPWG NetworkStatus, client v1.7 fields included). */
export const NetworkStatusEntry = Schema.Struct({
  name: Schema.String,
  interface: Schema.optionalKey(Schema.String),
  ips: Schema.optionalKey(Schema.Array(Schema.String)),
  mac: Schema.optionalKey(Schema.String),
  mtu: Schema.optionalKey(Schema.Int),
  default: Schema.optionalKey(Schema.Boolean),
  dns: Schema.optionalKey(Schema.Struct({
    nameservers: Schema.optionalKey(Schema.Array(Schema.String)),
    domain: Schema.optionalKey(Schema.String),
    search: Schema.optionalKey(Schema.Array(Schema.String)),
    options: Schema.optionalKey(Schema.Array(Schema.String)),
  })),
  gateway: Schema.optionalKey(Schema.Array(Schema.String)),
  "device-info": Schema.optionalKey(DeviceInfo),
});
export type NetworkStatusEntry = typeof NetworkStatusEntry.Type;

const NetworkStatusList = Schema.Array(NetworkStatusEntry);

/** The annotation value for `entries`. */
export function encodeNetworkStatus(
  entries: ReadonlyArray<NetworkStatusEntry>,
): Effect.Effect<string, AnnotationError> {
  return SchemaParser.encodeEffect(NetworkStatusList)(entries, { reportInput: true }).pipe(
    Effect.map((encoded) => JSON.stringify(encoded)),
    Effect.mapError((issue) => {
      const [leaf] = issueLeaves(issue);
      const [index, ...rest] = leaf?.segments ?? [];
      const field = fieldName(rest);
      return new AnnotationError({
        annotation: NetworkStatusAnnotation,
        reason: leaf?.message ?? "invalid value",
        ...(typeof index === "number" ? { entry: index } : {}),
        ...(field === undefined ? {} : { field }),
      });
    }),
  );
}

/** Reads a network-status value (written by danm or by Multus; unknown keys are ignored). */
export function parseNetworkStatus(value: string): Effect.Effect<ReadonlyArray<NetworkStatusEntry>, AnnotationError> {
  const a = NetworkStatusAnnotation;
  return Effect.gen(function* () {
    const json = yield* parseJson(a, value);
    if (!Array.isArray(json)) return yield* fail(a, "must be a JSON array");
    return yield* Effect.forEach(
      json,
      (raw, i) => isRecord(raw) ? decodeEntry(NetworkStatusEntry, raw, a, i) : fail(a, "must be a JSON object", i),
    );
  });
}
