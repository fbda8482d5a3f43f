// NetworkAttachmentDefinitions as DANM's netwatcher treats them (spec §2.5, §5.4): a single-plugin config with
// `master` + `vlan`/`vxlan` is a pseudo-network (NetworkID = config `name`, host_device = `master`), and once its
// host interface is planned, `spec.config.master` is rewritten to that interface so the delegate (ipvlan, macvlan …)
// attaches to it.
//
// DANM's rewrite fed back into its own update handler: the new master looked like a changed host_device, so it
// deleted the interface it had just created. Here the original master is remembered in an annotation and a master
// that names this NAD's own host interface is read through it, so the rewritten NAD yields the same demand as
// before the rewrite: nothing to undo, no loop.
import { Result, Schema, SchemaParser } from "effect";
import { Mtu, VlanId, VxlanId } from "../api/danm.ts";
import { problemsOf, renderProblems } from "../api/formats.ts";
import type { NetworkAttachmentDefinition } from "../api/k8s.ts";
import type { JsonPatchOperation } from "../ports/kube.ts";
import { type Demand, demandOf, type NetworkRef, vxlanIfName, type VxlanMode, VxlanModeAnnotation } from "./plan.ts";

/** Where netwatcher keeps the user's `master` after pointing `spec.config.master` at the host interface. */
export const OriginalMasterAnnotation = "danm.io/original-master";

/** Any JSON object: what is rewritten (every key the user wrote survives, in order). */
const ConfigObject = Schema.fromJsonString(Schema.Record(Schema.String, Schema.Unknown));

/** The keys netwatcher reads; the rest of the config belongs to the delegate and is ignored. */
const NadHostFields = Schema.Struct({
  name: Schema.optionalKey(Schema.String),
  type: Schema.optionalKey(Schema.String),
  master: Schema.optionalKey(Schema.String),
  vlan: Schema.optionalKey(VlanId),
  vxlan: Schema.optionalKey(VxlanId),
  mtu: Schema.optionalKey(Mtu),
});
type NadHostFields = typeof NadHostFields.Type;

export interface ParsedNad {
  readonly ref: NetworkRef;
  /** The parsed config object, to rewrite. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly fields: NadHostFields;
  /** Whether the stored text was pretty-printed (kept that way on rewrite). */
  readonly multiline: boolean;
}

export type NadReading =
  /** Not a host-interface NAD: no config, not a JSON object, a conflist, or no vlan/vxlan. */
  | { readonly _tag: "Ignored"; readonly why: string }
  | { readonly _tag: "Invalid"; readonly ref: NetworkRef; readonly problem: string }
  | { readonly _tag: "HostInterface"; readonly nad: ParsedNad };

export function nadRef(nad: NetworkAttachmentDefinition): NetworkRef {
  const m = nad.metadata;
  return {
    kind: "NetworkAttachmentDefinition",
    name: m.name ?? "",
    ...(m.namespace === undefined ? {} : { namespace: m.namespace }),
    ...(m.uid === undefined ? {} : { uid: m.uid }),
    ...(m.creationTimestamp === undefined ? {} : { creationTimestamp: m.creationTimestamp }),
  };
}

export function readNad(nad: NetworkAttachmentDefinition): NadReading {
  const text = nad.spec?.config;
  if (text === undefined || text.trim() === "") return { _tag: "Ignored", why: "no spec.config" };
  const parsed = SchemaParser.decodeUnknownResult(ConfigObject)(text);
  if (Result.isFailure(parsed)) return { _tag: "Ignored", why: "spec.config is not a JSON object" };
  const config = parsed.success;
  // A conflist has no top-level type; DANM ignores those too.
  if (!("type" in config)) return { _tag: "Ignored", why: "a conflist (no top-level type)" };
  if (!("vlan" in config) && !("vxlan" in config)) return { _tag: "Ignored", why: "no vlan or vxlan" };
  const ref = nadRef(nad);
  const fields = SchemaParser.decodeUnknownResult(NadHostFields)(config, { errors: "all" });
  if (Result.isFailure(fields)) {
    return { _tag: "Invalid", ref, problem: `spec.config: ${renderProblems(problemsOf(fields.failure))}` };
  }
  return { _tag: "HostInterface", nad: { ref, config, fields: fields.success, multiline: text.includes("\n") } };
}

/** The NetworkID of a NAD: the config's `name`, as DANM; the object name when the config has none. */
const networkIdOf = (n: ParsedNad): string => n.fields.name ?? n.ref.name;

/** The interface names this NAD could have written into `master` itself (for any VLAN ID). */
function isOwnInterfaceName(n: ParsedNad, master: string): boolean {
  const id = networkIdOf(n);
  if (master === vxlanIfName(id)) return true;
  return master.startsWith(`${id}.`) && /^\d+$/.test(master.slice(id.length + 1));
}

/**
 * The host device the NAD means: the remembered original when `master` is one of this NAD's own host interface
 * names (i.e. netwatcher rewrote it), otherwise `master` itself (a new master set by the user wins).
 */
export function effectiveMaster(n: ParsedNad, annotations: Readonly<Record<string, string>> | undefined) {
  const master = n.fields.master;
  const original = annotations?.[OriginalMasterAnnotation];
  if (master !== undefined && original !== undefined && isOwnInterfaceName(n, master)) return original;
  return master;
}

export function nadDemand(
  nad: NetworkAttachmentDefinition,
  reading: NadReading,
  defaultMode: VxlanMode,
): Demand | undefined {
  if (reading._tag === "Ignored") return undefined;
  if (reading._tag === "Invalid") return { ref: reading.ref, interfaces: [], problem: reading.problem };
  const n = reading.nad;
  const annotations = nad.metadata.annotations;
  const hostDevice = effectiveMaster(n, annotations);
  if (hostDevice === undefined) {
    return { ref: n.ref, interfaces: [], problem: "spec.config has vlan/vxlan but no master" };
  }
  const demand = demandOf({
    ref: n.ref,
    networkId: networkIdOf(n),
    hostDevice,
    ...(n.fields.vlan === undefined ? {} : { vlan: n.fields.vlan }),
    ...(n.fields.vxlan === undefined ? {} : { vxlan: n.fields.vxlan }),
    ...(n.fields.mtu === undefined ? {} : { mtu: n.fields.mtu }),
    ...(annotations?.[VxlanModeAnnotation] === undefined ? {} : { mode: annotations[VxlanModeAnnotation] }),
  }, defaultMode);
  const own = demand?.interfaces[0];
  if (own && own.parent === own.name) {
    return {
      ref: n.ref,
      interfaces: [],
      problem: `master ${own.name} is the NAD's own host interface and the original master is unknown ` +
        `(annotation ${OriginalMasterAnnotation} missing): set master to the host device`,
    };
  }
  return demand;
}

/** "/metadata/annotations/danm.io~1original-master": RFC 6901 escaping. */
const annotationPath = (key: string) => `/metadata/annotations/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`;

const render = (n: ParsedNad, master: string) =>
  JSON.stringify({ ...n.config, master }, null, n.multiline ? 2 : undefined);

/**
 * The JSON patch that points `spec.config.master` at the NAD's host interface and remembers the original, or
 * undefined when the NAD already says so. Guarded by resourceVersion: a concurrent edit makes it fail (409) and
 * the next pass recomputes it from the new object.
 */
export function nadRewrite(
  nad: NetworkAttachmentDefinition,
  reading: NadReading,
  demand: Demand | undefined,
): ReadonlyArray<JsonPatchOperation> | undefined {
  if (reading._tag !== "HostInterface" || !demand || demand.problem !== undefined) return undefined;
  const spec = demand.interfaces[0];
  if (!spec) return undefined;
  const n = reading.nad;
  const annotations = nad.metadata.annotations;
  if (n.fields.master === spec.name && annotations?.[OriginalMasterAnnotation] === spec.parent) return undefined;
  return [
    { op: "test", path: "/metadata/resourceVersion", value: nad.metadata.resourceVersion ?? "" },
    { op: "replace", path: "/spec/config", value: render(n, spec.name) },
    annotations === undefined
      ? { op: "add", path: "/metadata/annotations", value: { [OriginalMasterAnnotation]: spec.parent } }
      : { op: "add", path: annotationPath(OriginalMasterAnnotation), value: spec.parent },
  ];
}

/**
 * When a rewritten NAD stops asking for a host interface (vlan/vxlan removed), its master would name an interface
 * about to disappear: put the original back and forget it.
 */
export function nadRestore(nad: NetworkAttachmentDefinition): ReadonlyArray<JsonPatchOperation> | undefined {
  const original = nad.metadata.annotations?.[OriginalMasterAnnotation];
  const text = nad.spec?.config;
  if (original === undefined || text === undefined) return undefined;
  const parsed = SchemaParser.decodeUnknownResult(ConfigObject)(text);
  if (Result.isFailure(parsed) || "vlan" in parsed.success || "vxlan" in parsed.success) return undefined;
  const fields = SchemaParser.decodeUnknownResult(NadHostFields)(parsed.success);
  if (Result.isFailure(fields)) return undefined;
  const n: ParsedNad = {
    ref: nadRef(nad),
    config: parsed.success,
    fields: fields.success,
    multiline: text.includes("\n"),
  };
  const master = fields.success.master;
  const ops: JsonPatchOperation[] = [
    { op: "test", path: "/metadata/resourceVersion", value: nad.metadata.resourceVersion ?? "" },
  ];
  if (master !== undefined && isOwnInterfaceName(n, master)) {
    ops.push({ op: "replace", path: "/spec/config", value: render(n, original) });
  }
  ops.push({ op: "remove", path: annotationPath(OriginalMasterAnnotation) });
  return ops;
}
