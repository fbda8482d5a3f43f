// A kustomize renderer for exactly the features danm's k8s/ base uses — `resources` (YAML files, and directories
// with their own kustomization.yaml) and `namespace` — so tests can check what `kubectl apply -k k8s` applies
// without a kustomize binary. Anything else in a kustomization is an error, never silently ignored.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly [k: string]: unknown };
  readonly [k: string]: unknown;
}

export interface RenderedObject {
  readonly object: K8sObject;
  /** The file it came from, relative to the rendered root. */
  readonly source: string;
}

export class KustomizeError extends Error {
  override readonly name = "KustomizeError";
}

/**
 * Cluster-scoped kinds; every other kind this renderer accepts is namespaced. A kind in neither list is an error:
 * the `namespace` transformer must know which objects it applies to (kustomize asks its OpenAPI schema; the
 * integration test checks this table against the apiserver's discovery).
 */
export const clusterScopedKinds: ReadonlySet<string> = new Set([
  "CustomResourceDefinition",
  "ClusterRole",
  "ClusterRoleBinding",
  "MutatingWebhookConfiguration",
  "ValidatingWebhookConfiguration",
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
  "PriorityClass",
  "Namespace",
]);
export const namespacedKinds: ReadonlySet<string> = new Set([
  "ServiceAccount",
  "Role",
  "RoleBinding",
  "Service",
  "ConfigMap",
  "Secret",
  "Deployment",
  "DaemonSet",
  "PodDisruptionBudget",
]);

const supportedKeys = new Set(["apiVersion", "kind", "resources", "namespace"]);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function readKustomization(dir: string, rel: string): { resources: string[]; namespace?: string } {
  const names = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
  const present = names.filter((n) => exists(`${dir}/${n}`));
  if (present.length === 0) throw new KustomizeError(`${rel || "."}: no kustomization.yaml`);
  if (present.length > 1) throw new KustomizeError(`${rel || "."}: more than one of ${present.join(", ")}`);
  if (present[0] !== "kustomization.yaml") {
    throw new KustomizeError(`${rel || "."}: only kustomization.yaml is supported (found ${present[0]})`);
  }
  const doc: unknown = yaml.load(Deno.readTextFileSync(`${dir}/kustomization.yaml`));
  const where = `${rel ? `${rel}/` : ""}kustomization.yaml`;
  if (!isObject(doc)) throw new KustomizeError(`${where}: not a mapping`);
  for (const key of Object.keys(doc)) {
    if (!supportedKeys.has(key)) {
      throw new KustomizeError(`${where}: "${key}" is not supported by this renderer (only ${[...supportedKeys]})`);
    }
  }
  if (doc.apiVersion !== "kustomize.config.k8s.io/v1beta1" || doc.kind !== "Kustomization") {
    throw new KustomizeError(`${where}: expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization`);
  }
  const resources = doc.resources ?? [];
  if (!Array.isArray(resources) || !resources.every((r) => typeof r === "string")) {
    throw new KustomizeError(`${where}: resources must be a list of paths`);
  }
  if (doc.namespace !== undefined && (typeof doc.namespace !== "string" || doc.namespace === "")) {
    throw new KustomizeError(`${where}: namespace must be a non-empty string`);
  }
  return { resources, ...(doc.namespace === undefined ? {} : { namespace: doc.namespace as string }) };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function loadFile(path: string, rel: string): K8sObject[] {
  const docs = yaml.loadAll(Deno.readTextFileSync(path)).filter((d) => d !== null && d !== undefined);
  return docs.map((d, i) => {
    const where = `${rel} (document ${i + 1})`;
    if (!isObject(d)) throw new KustomizeError(`${where}: not a mapping`);
    if (typeof d.apiVersion !== "string" || typeof d.kind !== "string") {
      throw new KustomizeError(`${where}: no apiVersion/kind`);
    }
    if (d.kind === "List" || d.kind.endsWith("List")) throw new KustomizeError(`${where}: lists are not supported`);
    if (!isObject(d.metadata) || typeof d.metadata.name !== "string" || d.metadata.name === "") {
      throw new KustomizeError(`${where}: no metadata.name`);
    }
    if (!clusterScopedKinds.has(d.kind) && !namespacedKinds.has(d.kind)) {
      throw new KustomizeError(`${where}: kind ${d.kind} is unknown to this renderer (add it to a scope list)`);
    }
    if (clusterScopedKinds.has(d.kind) && d.metadata.namespace !== undefined) {
      throw new KustomizeError(`${where}: ${d.kind} is cluster-scoped but names a namespace`);
    }
    return d as unknown as K8sObject;
  });
}

const groupOf = (apiVersion: string) => apiVersion.includes("/") ? apiVersion.split("/")[0] : "";

/** kustomize's resource id: group, kind, namespace, name (the version does not count). */
export const resourceId = (o: K8sObject): string =>
  `${groupOf(o.apiVersion)}/${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;

function render(root: string, rel: string, depth: number): RenderedObject[] {
  if (depth > 16) throw new KustomizeError(`${rel}: kustomizations nested too deep (a cycle?)`);
  const dir = rel ? `${root}/${rel}` : root;
  const k = readKustomization(dir, rel);
  const out: RenderedObject[] = [];
  for (const entry of k.resources) {
    const where = rel || ".";
    const leaves = () =>
      new KustomizeError(`${where}: resource "${entry}" leaves the kustomization root (only a kustomization may)`);
    if (entry.startsWith("/") || entry.includes("://") || entry.includes("?")) throw leaves();
    const childRel = normalize(rel ? `${rel}/${entry}` : entry);
    let stat: Deno.FileInfo;
    try {
      stat = Deno.statSync(`${root}/${childRel}`);
    } catch {
      if (entry.split("/").includes("..")) throw leaves();
      throw new KustomizeError(`${where}: resource "${entry}" does not exist`);
    }
    // As kustomize's default load restrictor: a file must be in or below the kustomization's directory; another
    // kustomization (a directory) may be anywhere.
    if (stat.isDirectory) out.push(...render(root, childRel, depth + 1));
    else if (entry.split("/").includes("..")) throw leaves();
    else if (/\.ya?ml$/.test(childRel)) {
      out.push(...loadFile(`${root}/${childRel}`, childRel).map((object) => ({ object, source: childRel })));
    } else throw new KustomizeError(`${where}: resource "${entry}" is neither a directory nor a .yaml file`);
  }
  const result = k.namespace === undefined
    ? out
    : out.map((r) =>
      namespacedKinds.has(r.object.kind)
        ? { ...r, object: { ...r.object, metadata: { ...r.object.metadata, namespace: k.namespace } } }
        : r
    );
  const seen = new Map<string, string>();
  for (const r of result) {
    const id = resourceId(r.object);
    const first = seen.get(id);
    if (first !== undefined) throw new KustomizeError(`${id} is defined twice (${first} and ${r.source})`);
    seen.set(id, r.source);
  }
  return result;
}

/** `a/./b/../c/` as `a/c`; a path above the rendered root keeps its leading `..` segments. */
function normalize(path: string): string {
  const out: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else out.push(segment);
  }
  return out.join("/");
}

/** Renders the kustomization in `root` (a directory) as `kubectl kustomize` would, for the supported subset. */
export function renderKustomization(root: string): RenderedObject[] {
  return render(root.replace(/\/+$/, ""), "", 0);
}
