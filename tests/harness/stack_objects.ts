// What a test applies to the danm stack's apiserver (tests/harness/stack.ts), created object by object through
// discovery as `kubectl create` would, plus the pods the workload controllers would make (no controller-manager
// runs); and deleted again, newest first, at teardown.
import { pick, type Rest, type RestResponse } from "../integration/api/rest.ts";
import { sleep } from "./proc.ts";
import type { ApplyResult, Json, ObjectRef, Refusal } from "./stack.ts";

const workloadKinds = new Set(["Deployment", "ReplicaSet", "StatefulSet"]);
type Warned = ApplyResult["warned"][number];
/** Refusals a deletion may outgrow: an admission refusal (the webhook's delete protection), conflicts, overload. */
const retriable = new Set([403, 409, 429, 500, 503, 504]);
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
export const describe = (kind: string, name: string, namespace?: string) =>
  `${kind} ${namespace ? `${namespace}/` : ""}${name}`;
export const messageOf = (r: RestResponse) => String(pick(r.body, "message") ?? JSON.stringify(r.body));

export class ObjectApplier {
  /** Everything apply() created and teardown has not deleted, oldest first. */
  private readonly created: ObjectRef[] = [];
  /** Pods created through apply(), in creation order. */
  readonly pods: Array<{ namespace: string; name: string }> = [];
  /** Discovery, per apiVersion: kind → plural and scope. */
  private readonly discovered = new Map<string, Map<string, { plural: string; namespaced: boolean }>>();
  /** Round robin over the nodes for pods without a nodeName (no scheduler runs). */
  private rr = 0;

  constructor(private readonly rest: Rest, private readonly nodeNames: ReadonlyArray<string>) {}

  async apply(objects: ReadonlyArray<Json>): Promise<ApplyResult> {
    const refused: Refusal[] = [];
    const warned: Warned[] = [];
    const mine: ObjectRef[] = [];
    for (const obj of objects) {
      const ref = await this.createOne(obj, refused, warned);
      if (!ref) continue;
      mine.push(ref);
      if (workloadKinds.has(ref.kind)) {
        for (const pod of this.workloadPods(obj, ref)) {
          const p = await this.createOne(pod, refused, warned);
          if (p) mine.push(p);
        }
      }
    }
    return { created: mine, refused, warned };
  }

  /**
   * Deletes what apply() created (pods excepted: their kubelets remove them), newest first, and waits until each is
   * gone. The webhook's delete protection follows DanmEps by a watch event, so a refusal right after the last pod
   * went is retried until `deadline`.
   */
  async deleteAll(deadline: number): Promise<{ refused: Refusal[]; remaining: string[] }> {
    const refused: Refusal[] = [];
    const remaining: string[] = [];
    for (const ref of [...this.created].reverse()) {
      if (ref.kind === "Pod" && ref.apiVersion === "v1") continue;
      while (true) {
        const r = await this.rest.call("DELETE", ref.path);
        if (r.status === 200 || r.status === 202 || r.status === 404) break;
        if (!retriable.has(r.status) || Date.now() > deadline) {
          refused.push({
            object: describe(ref.kind, ref.name, ref.namespace),
            status: r.status,
            message: messageOf(r),
          });
          break;
        }
        await sleep(250);
      }
      if (ref.kind === "Namespace" && ref.apiVersion === "v1") {
        // No namespace controller runs: finalize it ourselves. What is still inside (Events, and anything a
        // component leaked) stays listable across namespaces, where leak checks find it.
        await this.rest.call("PUT", `${ref.path}/finalize`, {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name: ref.name },
          spec: { finalizers: [] },
        });
      }
    }
    for (const ref of [...this.created].reverse()) {
      while (true) {
        const r = await this.rest.call("GET", ref.path);
        if (r.status === 404 || pick(r.body, "metadata", "uid") !== ref.uid) break;
        if (Date.now() > deadline) {
          remaining.push(describe(ref.kind, ref.name, ref.namespace));
          break;
        }
        await sleep(200);
      }
    }
    this.created.length = 0;
    return { refused, remaining };
  }

  /** CRDs installed a moment ago may take a moment to appear in discovery. */
  private async resourceOf(apiVersion: string, kind: string) {
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    for (let attempt = 0; attempt < 50; attempt++) {
      const known = this.discovered.get(apiVersion)?.get(kind);
      if (known) return { base, ...known };
      const r = await this.rest.call("GET", base);
      const resources = pick(r.body, "resources");
      const map = new Map<string, { plural: string; namespaced: boolean }>();
      for (const res of Array.isArray(resources) ? resources : []) {
        const name = pick(res, "name"), k = pick(res, "kind");
        if (typeof name === "string" && typeof k === "string" && !name.includes("/")) {
          map.set(k, { plural: name, namespaced: pick(res, "namespaced") === true });
        }
      }
      this.discovered.set(apiVersion, map);
      const found = map.get(kind);
      if (found) return { base, ...found };
      await sleep(200);
    }
    throw new Error(`the apiserver does not serve ${kind} in ${apiVersion}`);
  }

  private async createOne(obj: Json, refused: Refusal[], warned: Warned[]): Promise<ObjectRef | undefined> {
    const apiVersion = String(obj.apiVersion ?? ""), kind = String(obj.kind ?? "");
    const meta = isObject(obj.metadata) ? obj.metadata : {};
    const name = String(meta.name ?? "");
    if (!apiVersion || !kind || !name) {
      refused.push({
        object: describe(kind || "?", name || "?"),
        status: 0,
        message: "apiVersion, kind and name needed",
      });
      return undefined;
    }
    const res = await this.resourceOf(apiVersion, kind);
    const namespace = res.namespaced ? String(meta.namespace ?? "default") : undefined;
    let body: Json = res.namespaced ? { ...obj, metadata: { ...meta, namespace } } : obj;
    if (kind === "Pod" && apiVersion === "v1") {
      const spec = isObject(body.spec) ? body.spec : {};
      // No scheduler runs: spread unbound pods over the nodes.
      if (!spec.nodeName) {
        body = { ...body, spec: { ...spec, nodeName: this.nodeNames[this.rr++ % this.nodeNames.length] } };
      }
    }
    const collection = `${res.base}${namespace ? `/namespaces/${namespace}` : ""}/${res.plural}`;
    const r = await this.rest.call("POST", collection, body);
    if (r.status !== 201) {
      refused.push({ object: describe(kind, name, namespace), status: r.status, message: messageOf(r) });
      return undefined;
    }
    if (r.warnings.length > 0) warned.push({ kind, ...(namespace ? { namespace } : {}), name, warnings: r.warnings });
    const ref: ObjectRef = {
      apiVersion,
      kind,
      name,
      ...(namespace ? { namespace } : {}),
      uid: String(pick(r.body, "metadata", "uid") ?? ""),
      path: `${collection}/${name}`,
    };
    this.created.push(ref);
    if (kind === "Pod" && apiVersion === "v1") this.pods.push({ namespace: namespace!, name });
    return ref;
  }

  /** The pods a workload's controller would create. */
  private workloadPods(obj: Json, ref: ObjectRef): Json[] {
    const spec = isObject(obj.spec) ? obj.spec : {};
    const template = isObject(spec.template) ? spec.template : {};
    const tmeta = isObject(template.metadata) ? template.metadata : {};
    const replicas = typeof spec.replicas === "number" ? spec.replicas : 1;
    return Array.from({ length: replicas }, (_, i) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        ...tmeta,
        name: `${ref.name}-${i}`,
        namespace: ref.namespace,
        ownerReferences: [{
          apiVersion: ref.apiVersion,
          kind: ref.kind,
          name: ref.name,
          uid: ref.uid,
          controller: true,
        }],
      },
      spec: template.spec ?? {},
    }));
  }
}
