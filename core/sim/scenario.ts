// Scenarios for `deno task sim`: ordinary Kubernetes YAML, the same a user would `kubectl apply` (files or
// directories, multi-document). Loading keeps every object's source so that errors name the file, the object
// and the field. Workloads (Deployment, StatefulSet, ReplicaSet, DaemonSet) are expanded into the pods their
// controllers would create; pods without a node are spread over the nodes like a scheduler would.
import { Effect, Schema } from "effect";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Fs } from "../ports/filesystem.ts";

export interface Source {
  readonly file: string;
  /** 0-based index of the YAML document in the file. */
  readonly document: number;
}

export type JsonObject = { readonly [k: string]: unknown };

export interface ScenarioObject {
  readonly source: Source;
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
  readonly raw: JsonObject;
}

export class ScenarioError extends Schema.TaggedError<ScenarioError>()("ScenarioError", {
  file: Schema.String,
  object: Schema.String,
  field: Schema.String,
  reason: Schema.String,
}) {
  override get message() {
    return `${this.file}: ${this.object}${this.field ? `: ${this.field}` : ""}: ${this.reason}`;
  }
}

const Envelope = Schema.Struct({
  apiVersion: Schema.String,
  kind: Schema.String,
  metadata: Schema.Struct({
    name: Schema.optionalKey(Schema.String),
    generateName: Schema.optionalKey(Schema.String),
    namespace: Schema.optionalKey(Schema.String),
  }),
});

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses one file's documents; a document that is not a Kubernetes object is an error naming it. */
export function parseScenarioText(
  file: string,
  text: string,
): { objects: ScenarioObject[]; errors: ScenarioError[] } {
  const objects: ScenarioObject[] = [], errors: ScenarioError[] = [];
  let docs: unknown[];
  try {
    docs = yaml.loadAll(text);
  } catch (e) {
    return {
      objects,
      errors: [
        new ScenarioError({
          file,
          object: "",
          field: "",
          reason: `not YAML: ${e instanceof Error ? e.message.split("\n")[0] : e}`,
        }),
      ],
    };
  }
  docs.forEach((doc, document) => {
    if (doc === null || doc === undefined) return;
    const where = `document ${document + 1}`;
    const decoded = Schema.decodeUnknownResult(Envelope)(doc);
    if (decoded._tag === "Failure" || !isObject(doc)) {
      errors.push(
        new ScenarioError({
          file,
          object: where,
          field: "apiVersion/kind/metadata",
          reason: "not a Kubernetes object (needs apiVersion, kind and metadata)",
        }),
      );
      return;
    }
    const env = decoded.success;
    if (env.kind === "List" && Array.isArray((doc as { items?: unknown }).items)) {
      for (const item of (doc as { items: unknown[] }).items) {
        const sub = parseScenarioText(file, yaml.dump(item));
        objects.push(...sub.objects.map((o) => ({ ...o, source: { file, document } })));
        errors.push(...sub.errors);
      }
      return;
    }
    const name = env.metadata.name ?? env.metadata.generateName;
    if (!name) {
      errors.push(
        new ScenarioError({ file, object: `${env.kind} (${where})`, field: "metadata.name", reason: "missing" }),
      );
      return;
    }
    objects.push({
      source: { file, document },
      apiVersion: env.apiVersion,
      kind: env.kind,
      name,
      ...(env.metadata.namespace ? { namespace: env.metadata.namespace } : {}),
      raw: doc,
    });
  });
  return { objects, errors };
}

/** Reads files and directories (recursively, *.yaml / *.yml / *.json, sorted) into one scenario. */
export const loadScenario = (paths: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    const files: string[] = [];
    const walk = (path: string): Effect.Effect<void, ScenarioError> =>
      Effect.gen(function* () {
        const st = yield* fs.stat(path).pipe(
          Effect.mapError((e) => new ScenarioError({ file: path, object: "", field: "", reason: e.message })),
        );
        if (st.kind === "directory") {
          const entries = yield* fs.readDir(path).pipe(
            Effect.mapError((e) => new ScenarioError({ file: path, object: "", field: "", reason: e.message })),
          );
          for (const e of entries) {
            if (e.kind === "directory" || /\.(ya?ml|json)$/.test(e.name)) yield* walk(`${path}/${e.name}`);
          }
        } else files.push(path);
      });
    for (const p of paths) yield* walk(p.replace(/\/$/, ""));
    const objects: ScenarioObject[] = [], errors: ScenarioError[] = [];
    for (const file of files) {
      const text = yield* fs.readText(file).pipe(
        Effect.mapError((e) => new ScenarioError({ file, object: "", field: "", reason: e.message })),
      );
      const parsed = parseScenarioText(file, text);
      objects.push(...parsed.objects);
      errors.push(...parsed.errors);
    }
    return { objects, errors };
  });

export const describeObject = (o: ScenarioObject) => `${o.kind} ${o.namespace ? `${o.namespace}/` : ""}${o.name}`;

// --- Nodes -------------------------------------------------------------------------------------------------

/** Annotation on a scenario `Node`: comma-separated host interfaces of the simulated node. */
export const hostInterfacesAnnotation = "sim.danm.io/host-interfaces";
/** Default host interfaces of a simulated node: a primary NIC and the secondary NICs DANM's examples use. */
export const defaultHostInterfaces = ["eth0", "ens3", "ens4", "ens5"] as const;
export const defaultNodes = ["node-1", "node-2"] as const;

/**
 * Annotation on a scenario `Node`: the SR-IOV pools its simulated device plugin offers, comma-separated
 * `<resource>=<PF>:<number of VFs>`, e.g. "nokia.k8s.io/sriov_ens1f0=ens1f0:8". Pods get VFs by requesting the
 * resource in their containers' limits (or requests), as with a real device plugin.
 */
export const sriovPoolsAnnotation = "sim.danm.io/sriov-pools";

export interface SimDevicePool {
  readonly resource: string;
  readonly pf: string;
  /** The VFs' PCI addresses, in the order the device plugin hands them out. */
  readonly deviceIds: ReadonlyArray<string>;
}

export interface SimNode {
  readonly name: string;
  readonly hostInterfaces: ReadonlyArray<string>;
  readonly labels: Readonly<Record<string, string>>;
  /** The node's IPv4 address on its first host interface, for unicast VXLAN and the Node object. */
  readonly address: string;
  readonly devicePools: ReadonlyArray<SimDevicePool>;
  /** Malformed parts of the node's sim annotations (the rest of the node is used). */
  readonly problems: ReadonlyArray<ScenarioError>;
}

const poolEntry = /^([A-Za-z0-9.-]+\/[A-Za-z0-9_.-]+)=([A-Za-z0-9_.-]{1,15}):([1-9][0-9]{0,2})$/;

/** Deterministic PCI addresses for pool `p` of a node: bus 0x81 + p, VFs from device 0x10, eight functions each. */
const vfAddress = (p: number, k: number) =>
  `0000:${(0x81 + p).toString(16)}:${(0x10 + Math.floor(k / 8)).toString(16).padStart(2, "0")}.${k % 8}`;

function devicePools(text: unknown, source: Source, node: string): Pick<SimNode, "devicePools" | "problems"> {
  const pools: SimDevicePool[] = [], problems: ScenarioError[] = [];
  const problem = (reason: string) =>
    problems.push(
      new ScenarioError({
        file: source.file,
        object: `Node ${node}`,
        field: `metadata.annotations["${sriovPoolsAnnotation}"]`,
        reason,
      }),
    );
  if (text === undefined) return { devicePools: pools, problems };
  if (typeof text !== "string") {
    problem("must be a string");
    return { devicePools: pools, problems };
  }
  for (const entry of text.split(",").map((e) => e.trim()).filter(Boolean)) {
    const m = poolEntry.exec(entry);
    if (!m) {
      problem(`"${entry}" is not <resource>=<PF>:<VFs> (e.g. nokia.k8s.io/sriov_ens1f0=ens1f0:8, 1–999 VFs)`);
    } else if (pools.some((p) => p.resource === m[1])) {
      problem(`resource ${m[1]} appears twice`);
    } else {
      const index = pools.length;
      pools.push({
        resource: m[1],
        pf: m[2],
        deviceIds: Array.from({ length: Number(m[3]) }, (_, k) => vfAddress(index, k)),
      });
    }
  }
  return { devicePools: pools, problems };
}

export function simNodes(objects: ReadonlyArray<ScenarioObject>): SimNode[] {
  const nodes = objects.filter((o) => o.kind === "Node");
  const named: Array<{ name: string; raw: JsonObject; source: Source }> = nodes.length
    ? nodes.map((n) => ({ name: n.name, raw: n.raw, source: n.source }))
    : defaultNodes.map((name) => ({ name, raw: {}, source: { file: "(default nodes)", document: 0 } }));
  return named.map(({ name, raw, source }, i) => {
    const meta: JsonObject = isObject(raw.metadata) ? raw.metadata : {};
    const annotations: JsonObject = isObject(meta.annotations) ? meta.annotations : {};
    const labels = isObject(meta.labels) ? meta.labels as Record<string, string> : {};
    const list = typeof annotations[hostInterfacesAnnotation] === "string"
      ? (annotations[hostInterfacesAnnotation] as string).split(",").map((s) => s.trim()).filter(Boolean)
      : [...defaultHostInterfaces];
    return {
      name,
      hostInterfaces: list,
      labels,
      address: `192.168.100.${11 + i}`,
      ...devicePools(annotations[sriovPoolsAnnotation], source, name),
    };
  });
}

// --- Workloads -----------------------------------------------------------------------------------------------

const workloadKinds = new Set(["Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"]);

function shortHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(36).padStart(7, "0").slice(-7).replace(/[^a-z0-9]/g, "x");
}

export interface ExpandedPod {
  readonly source: Source;
  /** The workload (or the Pod itself) the pod came from, e.g. "Deployment default/web". */
  readonly owner: string;
  readonly pod: JsonObject;
}

/**
 * The pods of the scenario: its Pods, plus those its workloads' controllers would create (Deployment and
 * ReplicaSet: `<name>-<hash>-<i>`, StatefulSet: `<name>-<ordinal>` with hostname/subdomain, DaemonSet: one per
 * node). Names are deterministic so that runs are reproducible. Pods without spec.nodeName are assigned
 * round-robin over the nodes, in scenario order.
 */
export function expandPods(
  objects: ReadonlyArray<ScenarioObject>,
  nodes: ReadonlyArray<SimNode>,
): { pods: ExpandedPod[]; errors: ScenarioError[] } {
  const pods: ExpandedPod[] = [], errors: ScenarioError[] = [];
  let next = 0;
  const place = (spec: JsonObject, fixedNode?: string): JsonObject => {
    if (fixedNode) return { ...spec, nodeName: fixedNode };
    if (typeof spec.nodeName === "string" && spec.nodeName) return spec;
    const node = nodes[next++ % nodes.length].name;
    return { ...spec, nodeName: node };
  };
  for (const o of objects) {
    const ns = o.namespace ?? "default";
    if (o.kind === "Pod") {
      const spec = isObject(o.raw.spec) ? o.raw.spec : {};
      pods.push({
        source: o.source,
        owner: describeObject(o),
        pod: { ...o.raw, metadata: { ...(o.raw.metadata as JsonObject), namespace: ns }, spec: place(spec) },
      });
      continue;
    }
    if (!workloadKinds.has(o.kind)) continue;
    const spec = isObject(o.raw.spec) ? o.raw.spec : {};
    const template = isObject(spec.template) ? spec.template : undefined;
    if (!template) {
      errors.push(
        new ScenarioError({
          file: o.source.file,
          object: describeObject(o),
          field: "spec.template",
          reason: "missing",
        }),
      );
      continue;
    }
    const tmeta = isObject(template.metadata) ? template.metadata : {};
    const tspec = isObject(template.spec) ? template.spec : {};
    const replicas = o.kind === "DaemonSet" ? nodes.length : typeof spec.replicas === "number" ? spec.replicas : 1;
    if (!Number.isInteger(replicas) || replicas < 0) {
      errors.push(
        new ScenarioError({
          file: o.source.file,
          object: describeObject(o),
          field: "spec.replicas",
          reason: "must be a non-negative integer",
        }),
      );
      continue;
    }
    const hash = shortHash(JSON.stringify(template));
    for (let i = 0; i < replicas; i++) {
      const name = o.kind === "StatefulSet"
        ? `${o.name}-${i}`
        : o.kind === "DaemonSet"
        ? `${o.name}-${shortHash(nodes[i].name).slice(0, 5)}`
        : `${o.name}-${hash}-${i}`;
      const extra: JsonObject = o.kind === "StatefulSet"
        ? { hostname: name, ...(typeof spec.serviceName === "string" ? { subdomain: spec.serviceName } : {}) }
        : {};
      pods.push({
        source: o.source,
        owner: describeObject(o),
        pod: {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { ...tmeta, name, namespace: ns },
          spec: place({ ...tspec, ...extra }, o.kind === "DaemonSet" ? nodes[i].name : undefined),
        },
      });
    }
  }
  return { pods, errors };
}
