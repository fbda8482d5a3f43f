// The in-memory twin of the apiserver behind the Kube port, for unit tests and the simulation.
//
// Semantics follow kube-apiserver where danm can observe them: one global resourceVersion bumped by every write,
// optimistic concurrency, AlreadyExists, generateName, uid/creationTimestamp, label and field selectors,
// namespaced vs cluster-scoped kinds, ordered watches resumable from a resourceVersion with a bounded history
// (older versions answer 410 Gone), status subresources, finalizers and graceful pod deletion, dry-run,
// merge/JSON patches and an approximation of server-side apply, and pluggable admission hooks.
//
// Not modelled: a garbage collector (ownerReferences, Foreground/Orphan finalizers stay until removed), the
// namespace controller (namespaces need not exist, deleting one deletes nothing else), most per-kind defaulting
// and validation beyond names, labels and the kind's Schema, and consistent snapshots across list pages.
import { type Cause, Effect, Layer, Predicate, Queue, Result, Schedule, Schema, type Scope, Stream } from "effect";
import { statusSubresources as coreStatusSubresources } from "../../core/api/k8s.ts";
import { apiVersionOf, Kube, type KubeError, type KubeService, objectKey, type Patch } from "../../core/ports/kube.ts";
import type {
  AnyResourceType,
  CollectionRef,
  KubeBackend,
  ListQuery,
  ObjectRef,
  RawList,
  RawWatchEvent,
  WatchQuery,
  WriteParams,
} from "./backend.ts";
import { makeKube, metaOf } from "./client.ts";
import {
  clone,
  deepEqual,
  isJsonObject,
  type JsonObject,
  jsonPatch,
  mergePatch,
  type Ownership,
  PatchError,
  serverSideApply,
} from "./patch.ts";
import {
  fieldReader,
  type FieldRequirement,
  type LabelRequirement,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  SelectorParseError,
  supportedFieldLabels,
} from "./selectors.ts";
import { deepFreeze, IndexedBucket, labelsOf, type Selection } from "./memory_index.ts";
import { WatcherRoutes } from "./memory_watchers.ts";
import { errorFromStatus, failureStatus, type RequestTarget, type StatusBody } from "./status.ts";

// --- Admission ------------------------------------------------------------------------------------------

export interface AdmissionRequest {
  readonly operation: "CREATE" | "UPDATE" | "DELETE";
  readonly resource: {
    readonly group: string;
    readonly version: string;
    readonly kind: string;
    readonly plural: string;
  };
  readonly subresource?: "status";
  readonly namespace?: string;
  /** Empty for a create whose name is still to be generated (mutating phase). */
  readonly name: string;
  /** The incoming object (CREATE, UPDATE). */
  readonly object?: JsonObject;
  /** The stored object (UPDATE, DELETE). */
  readonly oldObject?: JsonObject;
  readonly dryRun: boolean;
}

export type AdmissionDecision =
  /** Mutating hooks may hand back a replacement object; validating hooks' objects are ignored. */
  | { readonly allowed: true; readonly object?: JsonObject }
  /** Denial answered with `code` (default 403, as for a webhook denial). */
  | { readonly allowed: false; readonly message: string; readonly code?: number; readonly reason?: string };

export interface AdmissionHook {
  readonly name: string;
  /** Mutating hooks run before defaulting and validation, validating hooks see the final object. */
  readonly phase: "mutating" | "validating";
  readonly matches?: (request: AdmissionRequest) => boolean;
  readonly admit: (request: AdmissionRequest) => Effect.Effect<AdmissionDecision>;
}

export interface MemoryApiServerOptions {
  /** Watch events kept for resuming; watching from an older resourceVersion answers 410. Default 1000. */
  readonly historyLimit?: number;
  /** Extra resources with a status subresource ({group, plural}), e.g. CRDs that declare one. */
  readonly statusSubresources?: ReadonlyArray<{ readonly group: string; readonly plural: string }>;
  readonly admission?: ReadonlyArray<AdmissionHook>;
  /** How often open watches that asked for bookmarks get one. Default 1000 ms. */
  readonly bookmarkIntervalMs?: number;
  /** First clusterIP handed to Services without one (sequential from here). Default 10.96.0.10. */
  readonly serviceIPStart?: string;
}

// --- Internals ------------------------------------------------------------------------------------------

/** A failure with the Status the apiserver would answer; converted to a KubeError at the request boundary. */
class ApiFailure extends Error {
  constructor(readonly status: StatusBody) {
    super(status.message);
  }
}

interface Stored {
  /** Deep-frozen: handed out as is by reads, lists and watches (never a mutable alias of the store). */
  readonly raw: JsonObject;
  readonly owners: Ownership;
}

interface HistoryEntry {
  readonly rv: number;
  readonly bucket: string;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: JsonObject;
  readonly previous?: JsonObject;
}

interface Watcher {
  readonly bucket: string;
  readonly selection: Selection;
  readonly queue: Queue.Queue<RawWatchEvent, KubeError | Cause.Done>;
}

const bucketOf = (rt: { readonly group: string; readonly plural: string }) => `${rt.group}/${rt.plural}`;
const resourceName = (rt: AnyResourceType) => rt.group ? `${rt.plural}.${rt.group}` : rt.plural;
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
const later = (seconds: number) => new Date(Date.now() + seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");

const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dns1035Label = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const qualifiedName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

function invalid(rt: AnyResourceType, name: string, causes: Array<{ field: string; message: string }>): ApiFailure {
  const msg = causes.map((c) => `${c.field}: ${c.message}`).join(", ");
  return new ApiFailure(
    failureStatus(422, "Invalid", `${rt.kind}${rt.group ? `.${rt.group}` : ""} "${name}" is invalid: ${msg}`, {
      name,
      group: rt.group,
      kind: rt.kind,
      causes: causes.map((c) => ({ reason: "FieldValueInvalid", message: c.message, field: c.field })),
    }),
  );
}

const notFound = (rt: AnyResourceType, name: string) =>
  new ApiFailure(failureStatus(404, "NotFound", `${resourceName(rt)} "${name}" not found`, {
    name,
    group: rt.group,
    kind: rt.plural,
  }));

const conflict = (rt: AnyResourceType, name: string, why: string) =>
  new ApiFailure(
    failureStatus(409, "Conflict", `Operation cannot be fulfilled on ${resourceName(rt)} "${name}": ${why}`, {
      name,
      group: rt.group,
      kind: rt.plural,
    }),
  );

const badRequest = (message: string) => new ApiFailure(failureStatus(400, "BadRequest", message));

function validateKey(field: string, key: string, problems: Array<{ field: string; message: string }>) {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : "", name = slash >= 0 ? key.slice(slash + 1) : key;
  if (
    (slash >= 0 && (!dns1123Subdomain.test(prefix) || prefix.length > 253)) || !qualifiedName.test(name) ||
    name.length > 63
  ) {
    problems.push({
      field,
      message: `Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.'`,
    });
  }
}

function validateMeta(rt: AnyResourceType, obj: JsonObject): void {
  const meta = isJsonObject(obj.metadata) ? obj.metadata : {};
  const name = Predicate.isString(meta.name) ? meta.name : "";
  const problems: Array<{ field: string; message: string }> = [];
  const label = rt.group === "" && rt.plural === "namespaces";
  const svc = rt.group === "" && rt.plural === "services";
  const re = svc ? dns1035Label : label ? dns1123Label : dns1123Subdomain;
  if (!re.test(name) || name.length > (svc || label ? 63 : 253)) {
    problems.push({
      field: "metadata.name",
      message: `Invalid value: "${name}": a lowercase RFC 1123 ${
        svc || label ? "label" : "subdomain"
      } must consist of lower case alphanumeric characters, '-' or '.'`,
    });
  }
  if (isJsonObject(meta.labels)) {
    for (const [k, v] of Object.entries(meta.labels)) {
      validateKey("metadata.labels", k, problems);
      if (!Predicate.isString(v) || (v !== "" && (!qualifiedName.test(v) || v.length > 63))) {
        problems.push({
          field: "metadata.labels",
          message: `Invalid value: "${String(v)}": a valid label must be 63 characters or less`,
        });
      }
    }
  }
  if (isJsonObject(meta.annotations)) {
    for (const [k, v] of Object.entries(meta.annotations)) {
      validateKey("metadata.annotations", k, problems);
      if (!Predicate.isString(v)) {
        problems.push({ field: "metadata.annotations", message: `Invalid value: annotation ${k} must be a string` });
      }
    }
  }
  if (problems.length > 0) throw invalid(rt, name, problems);
}

const randomSuffix = () => {
  // The apiserver's alphabet: no vowels (no words), no lookalikes.
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  return Array.from({ length: 5 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
};

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
}
const intToIpv4 = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");

// --- The store ------------------------------------------------------------------------------------------

export class MemoryApiServer {
  private rv = 100;
  /** Every resourceVersion above this one is still in `history`. */
  private compactedRv = 100;
  private readonly buckets = new Map<string, IndexedBucket<Stored>>();
  private history: HistoryEntry[] = [];
  /** Open watches by bucket. */
  private readonly watchers = new Map<string, WatcherRoutes<Watcher>>();
  private readonly hooks: AdmissionHook[];
  private readonly statusKinds: Set<string>;
  private readonly historyLimit: number;
  private readonly bookmarkIntervalMs: number;
  private nextServiceIP: number;

  constructor(options: MemoryApiServerOptions = {}) {
    this.historyLimit = options.historyLimit ?? 1000;
    this.bookmarkIntervalMs = options.bookmarkIntervalMs ?? 1000;
    this.hooks = [...(options.admission ?? [])];
    this.statusKinds = new Set([...coreStatusSubresources, ...(options.statusSubresources ?? [])].map(bucketOf));
    this.nextServiceIP = ipv4ToInt(options.serviceIPStart ?? "10.96.0.10");
  }

  // --- Controls for tests and the simulation -------------------------------------------------------------

  /** Registers an admission hook; returns a function removing it again. */
  addAdmissionHook(hook: AdmissionHook): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  addStatusSubresource(rt: { readonly group: string; readonly plural: string }): void {
    this.statusKinds.add(bucketOf(rt));
  }

  /** Ends every open watch connection, as an apiserver restart or a load balancer would. Returns how many. */
  dropWatches(): number {
    const n = this.openWatches;
    for (const ws of this.watchers.values()) for (const w of ws.all()) Queue.endUnsafe(w.queue);
    this.watchers.clear();
    return n;
  }

  /** How many watch connections are open. */
  get openWatches(): number {
    let n = 0;
    for (const ws of this.watchers.values()) n += ws.size;
    return n;
  }

  /** Forgets all watch history: every resourceVersion before now answers 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Raw stored objects of one resource (copies), sorted by namespace/name. */
  objects(rt: { readonly group: string; readonly plural: string }): JsonObject[] {
    return [...(this.buckets.get(bucketOf(rt))?.entries() ?? [])].map(([, s]) => clone(s.raw));
  }

  // --- Plumbing -----------------------------------------------------------------------------------------

  private run<A>(t: RequestTarget, f: () => A): Effect.Effect<A, KubeError> {
    return Effect.suspend(() => {
      try {
        return Effect.succeed(f());
      } catch (e) {
        if (e instanceof ApiFailure) return Effect.fail(errorFromStatus(t, e.status.code, e.status));
        return Effect.die(e);
      }
    });
  }

  private bucket(rt: AnyResourceType): IndexedBucket<Stored> {
    const key = bucketOf(rt);
    let b = this.buckets.get(key);
    if (!b) {
      this.buckets.set(key, b = new IndexedBucket(["metadata.name", "metadata.namespace", ...indexedFields(key)]));
    }
    return b;
  }

  private key(ref: ObjectRef): string {
    return objectKey(ref.rt.namespaced ? ref.namespace : undefined, ref.name);
  }

  private lookup(ref: ObjectRef): Stored {
    const s = this.bucket(ref.rt).get(this.key(ref));
    if (!s) throw notFound(ref.rt, ref.name);
    return s;
  }

  private record(entry: Omit<HistoryEntry, "rv">): number {
    const rv = ++this.rv;
    const e: HistoryEntry = { ...entry, rv };
    this.history.push(e);
    while (this.history.length > this.historyLimit) this.compactedRv = this.history.shift()!.rv;
    const ws = this.watchers.get(e.bucket);
    if (ws) { for (const w of ws.candidates(e.object, e.previous)) this.deliver(w, e); }
    return rv;
  }

  private deliver(w: Watcher, e: HistoryEntry): void {
    if (w.bucket !== e.bucket) return;
    const cur = w.selection.matches(e.object), prev = e.previous !== undefined && w.selection.matches(e.previous);
    const offer = (type: RawWatchEvent["type"], object: JsonObject) => Queue.offerUnsafe(w.queue, { type, object });
    if (e.type === "ADDED") {
      if (cur) offer("ADDED", e.object);
    } else if (e.type === "DELETED") {
      if (cur) offer("DELETED", e.object);
    } else if (cur && prev) offer("MODIFIED", e.object);
    else if (cur) offer("ADDED", e.object);
    else if (prev) {
      // Leaving the selection looks like a deletion: the old state with the new resourceVersion (as the
      // apiserver's watch cache does).
      const old = e.previous!;
      offer(
        "DELETED",
        deepFreeze({ ...old, metadata: { ...old.metadata as JsonObject, resourceVersion: String(e.rv) } }),
      );
    }
  }

  private hasStatus(rt: AnyResourceType): boolean {
    return this.statusKinds.has(bucketOf(rt));
  }

  private admit(
    phase: "mutating" | "validating",
    request: AdmissionRequest,
    t: RequestTarget,
  ): Effect.Effect<JsonObject | undefined, KubeError> {
    const hooks = this.hooks.filter((h) => h.phase === phase);
    return Effect.gen(function* () {
      let object = request.object;
      for (const hook of hooks) {
        // `matches` only looks: it sees the object itself; the copy is for a hook that admits (most requests
        // match no hook, and copying a pod per hook was ~4% of a 6,000-pod simulation).
        if (hook.matches && !hook.matches(object ? { ...request, object } : request)) continue;
        const req = { ...request, ...(object ? { object: clone(object) } : {}) };
        const d = yield* hook.admit(req);
        if (!d.allowed) {
          const code = d.code ?? 403;
          const message = `admission webhook "${hook.name}" denied the request: ${d.message}`;
          return yield* Effect.fail(errorFromStatus(t, code, failureStatus(code, d.reason ?? "Forbidden", message)));
        }
        if (phase === "mutating" && d.object) object = clone(d.object);
      }
      return object;
    });
  }

  private checkSchema(rt: AnyResourceType, obj: JsonObject, name: string): void {
    const r = Schema.decodeUnknownResult(rt.schema)(obj);
    if (Result.isFailure(r)) {
      // Like the apiserver's OpenAPI validation; the Schema's message carries the path.
      throw invalid(rt, name, [{ field: "<schema>", message: r.failure.message.slice(0, 500) }]);
    }
  }

  private parseSelectors(
    rt: AnyResourceType,
    namespace: string | undefined,
    q: { labelSelector?: string; fieldSelector?: string },
  ): Selection {
    try {
      const labels: ReadonlyArray<LabelRequirement> = q.labelSelector ? parseLabelSelector(q.labelSelector) : [];
      const fields: ReadonlyArray<FieldRequirement> = q.fieldSelector ? parseFieldSelector(q.fieldSelector) : [];
      const allowed = ["metadata.name", "metadata.namespace", ...indexedFields(bucketOf(rt))];
      for (const f of fields) {
        if (!allowed.includes(f.path)) throw badRequest(`field label not supported: ${f.path}`);
      }
      const ns = rt.namespaced ? namespace : undefined;
      const tests = [
        ...(ns ? [{ read: fieldReader("metadata.namespace"), value: ns, equal: true }] : []),
        ...fields.map((f) => ({ read: fieldReader(f.path), value: f.value, equal: f.op === "=" })),
      ];
      return {
        ...(ns ? { namespace: ns } : {}),
        labels,
        fields,
        // Label values are strings: validateMeta refuses anything else on every write.
        matches: (obj) =>
          tests.every((t) => (t.read(obj) === t.value) === t.equal) &&
          (labels.length === 0 || matchesLabels(labels, labelsOf(obj))),
      };
    } catch (e) {
      if (e instanceof SelectorParseError) throw badRequest(e.message);
      throw e;
    }
  }

  // --- Defaulting on create -------------------------------------------------------------------------------

  private prepareCreate(rt: AnyResourceType, namespace: string | undefined, input: JsonObject): JsonObject {
    const obj = clone(input);
    const meta: JsonObject = isJsonObject(obj.metadata) ? obj.metadata : {};
    obj.metadata = meta;
    obj.apiVersion = apiVersionOf(rt);
    obj.kind = rt.kind;
    if (rt.namespaced) {
      if (!namespace) throw badRequest(`${rt.kind} is namespaced: a namespace is required`);
      if (meta.namespace !== undefined && meta.namespace !== namespace) {
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      }
      meta.namespace = namespace;
    } else delete meta.namespace;
    if (!Predicate.isString(meta.name) || meta.name === "") {
      if (!Predicate.isString(meta.generateName) || meta.generateName === "") {
        throw invalid(rt, "", [{
          field: "metadata.name",
          message: "Required value: name or generateName is required",
        }]);
      }
      meta.name = meta.generateName + randomSuffix();
    }
    for (
      const k of ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"]
    ) {
      delete meta[k];
    }
    meta.uid = crypto.randomUUID();
    meta.creationTimestamp = now();
    meta.generation = 1;
    validateMeta(rt, obj);
    this.defaultKind(rt, obj);
    return obj;
  }

  /** The little defaulting of core kinds danm can see. */
  private defaultKind(rt: AnyResourceType, obj: JsonObject): void {
    if (rt.group !== "") {
      if (this.hasStatus(rt)) delete obj.status;
      return;
    }
    const spec: JsonObject = isJsonObject(obj.spec) ? obj.spec : {};
    const defaultProtocols = (ports: unknown) => {
      if (Array.isArray(ports)) {
        for (const p of ports) if (isJsonObject(p) && p.protocol === undefined) p.protocol = "TCP";
      }
    };
    switch (rt.plural) {
      case "pods":
        obj.status = { phase: "Pending" };
        if (Array.isArray(spec.containers)) {
          for (const c of spec.containers) if (isJsonObject(c)) defaultProtocols(c.ports);
        }
        break;
      case "namespaces":
        obj.status = { phase: "Active" };
        break;
      case "services": {
        obj.spec = spec;
        obj.status = { loadBalancer: {} };
        spec.type ??= "ClusterIP";
        defaultProtocols(spec.ports);
        if (Array.isArray(spec.ports)) {
          for (const p of spec.ports) if (isJsonObject(p) && p.targetPort === undefined) p.targetPort = p.port;
        }
        if (spec.type !== "ExternalName") {
          if (spec.clusterIP === undefined || spec.clusterIP === "") spec.clusterIP = intToIpv4(this.nextServiceIP++);
          spec.clusterIPs ??= [spec.clusterIP];
          if (spec.clusterIP !== "None") {
            spec.ipFamilies ??= ["IPv4"];
            spec.ipFamilyPolicy ??= "SingleStack";
          }
        }
        break;
      }
    }
  }

  // --- Updates -------------------------------------------------------------------------------------------

  /** What the strategy of the kind keeps from the stored object on an update. */
  private prepareUpdate(rt: AnyResourceType, cur: JsonObject, input: JsonObject, subresource?: "status"): JsonObject {
    const curMeta = cur.metadata as JsonObject;
    const name = String(curMeta.name);
    let next: JsonObject;
    if (subresource === "status") {
      if (!this.hasStatus(rt)) throw notFound(rt, `${name}/status`);
      next = clone(cur);
      if (input.status === undefined) delete next.status;
      else next.status = clone(input.status);
    } else {
      next = clone(input);
      if (this.hasStatus(rt)) {
        if (cur.status === undefined) delete next.status;
        else next.status = clone(cur.status);
      }
    }
    const meta: JsonObject = isJsonObject(next.metadata) ? next.metadata : {};
    next.metadata = meta;
    next.apiVersion = apiVersionOf(rt);
    next.kind = rt.kind;
    for (
      const k of [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
      ]
    ) {
      if (curMeta[k] === undefined) delete meta[k];
      else meta[k] = curMeta[k];
    }
    delete meta.managedFields;
    if (curMeta.deletionTimestamp !== undefined) {
      const before = new Set(Array.isArray(curMeta.finalizers) ? curMeta.finalizers : []);
      const added = (Array.isArray(meta.finalizers) ? meta.finalizers : []).filter((f) => !before.has(f));
      if (added.length > 0) {
        throw invalid(rt, name, [{
          field: "metadata.finalizers",
          message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${
            JSON.stringify(added)
          }`,
        }]);
      }
    }
    // generation counts changes of everything but metadata and status.
    const body = (o: JsonObject) => {
      const { metadata: _m, status: _s, ...rest } = o;
      return rest;
    };
    const gen = Predicate.isNumber(curMeta.generation) ? curMeta.generation : 1;
    meta.generation = deepEqual(body(cur), body(next)) ? gen : gen + 1;
    validateMeta(rt, next);
    return next;
  }

  /**
   * The update loop shared by replace and the patches: compute the new object from the stored one, admit,
   * prepare, validate, commit, and start over when a concurrent write got in between (optimistic, as
   * GuaranteedUpdate does).
   */
  private update(
    verb: string,
    ref: ObjectRef,
    params: WriteParams,
    compute: (cur: Stored) => { object: JsonObject; owners?: Ownership },
  ): Effect.Effect<JsonObject, KubeError> {
    const t: RequestTarget = { verb, kind: ref.rt.kind, namespace: ref.namespace, name: ref.name };
    const attempt = Effect.gen({ self: this }, function* () {
      const { cur, next, owners } = yield* this.run(t, () => {
        const cur = this.lookup(ref);
        const c = compute(cur);
        return { cur, next: c.object, owners: c.owners };
      });
      const base = {
        operation: "UPDATE" as const,
        resource: { group: ref.rt.group, version: ref.rt.version, kind: ref.rt.kind, plural: ref.rt.plural },
        ...(params.subresource ? { subresource: params.subresource } : {}),
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        name: ref.name,
        oldObject: cur.raw,
        dryRun: params.dryRun ?? false,
      };
      const mutated = (yield* this.admit("mutating", { ...base, object: next }, t)) ?? next;
      const prepared = yield* this.run(t, () => {
        const p = this.prepareUpdate(ref.rt, cur.raw, mutated, params.subresource);
        this.checkSchema(ref.rt, p, ref.name);
        return p;
      });
      yield* this.admit("validating", { ...base, object: prepared }, t);
      return yield* this.run(t, () => {
        if (this.bucket(ref.rt).get(this.key(ref)) !== cur) return undefined; // raced: recompute
        const curMeta = cur.raw.metadata as JsonObject;
        // prepared is this request's own copy: it carries the stored version until committed.
        (prepared.metadata as JsonObject).resourceVersion = curMeta.resourceVersion;
        if (deepEqual(prepared, cur.raw) && (owners === undefined || ownersEqual(owners, cur.owners))) {
          return cur.raw; // no-op: no new resourceVersion, no event
        }
        if (params.dryRun) return prepared;
        return this.commitUpdate(ref, cur, prepared, owners ?? cur.owners);
      });
    });
    return Effect.gen({ self: this }, function* () {
      for (let i = 0; i < 16; i++) {
        const r = yield* attempt;
        if (r !== undefined) return r;
      }
      return yield* this.run(t, () => {
        throw conflict(ref.rt, ref.name, "too many concurrent updates");
      });
    });
  }

  private commitUpdate(ref: ObjectRef, cur: Stored, next: JsonObject, owners: Ownership): JsonObject {
    const meta = next.metadata as JsonObject;
    const finalizers = Array.isArray(meta.finalizers) ? meta.finalizers : [];
    const graceLeft = Predicate.isNumber(meta.deletionGracePeriodSeconds) && meta.deletionGracePeriodSeconds > 0;
    if (meta.deletionTimestamp !== undefined && finalizers.length === 0 && !graceLeft) {
      return this.remove(ref, next);
    }
    const bucket = bucketOf(ref.rt);
    const rv = this.rv + 1;
    meta.resourceVersion = String(rv);
    deepFreeze(next);
    this.bucket(ref.rt).set(this.key(ref), { raw: next, owners });
    this.record({ bucket, type: "MODIFIED", object: next, previous: cur.raw });
    return next;
  }

  private remove(ref: ObjectRef, last: JsonObject): JsonObject {
    const obj = deepFreeze({
      ...last,
      metadata: { ...last.metadata as JsonObject, resourceVersion: String(this.rv + 1) },
    });
    this.bucket(ref.rt).delete(this.key(ref));
    this.record({ bucket: bucketOf(ref.rt), type: "DELETED", object: obj });
    return obj;
  }

  // --- The backend --------------------------------------------------------------------------------------

  readonly backend: KubeBackend = {
    get: (ref) =>
      this.run(
        { verb: "get", kind: ref.rt.kind, namespace: ref.namespace, name: ref.name },
        () => this.lookup(ref).raw,
      ),

    list: (ref, q) =>
      this.run({ verb: "list", kind: ref.rt.kind, namespace: ref.namespace }, () => this.listNow(ref, q)),

    create: (ref, body, params) => this.create(ref, body, params),

    replace: (ref, body, params) =>
      this.update(params.subresource === "status" ? "updateStatus" : "update", ref, params, (cur) => {
        const want = metaOf(body).resourceVersion;
        const have = (cur.raw.metadata as JsonObject).resourceVersion;
        if (want !== undefined && want !== have) {
          throw conflict(
            ref.rt,
            ref.name,
            "the object has been modified; please apply your changes to the latest version and try again",
          );
        }
        return { object: body };
      }),

    patch: (ref, patch, params) => this.patch(ref, patch, params),

    delete: (ref, options) => this.delete(ref, options),

    watch: (ref, q) => this.watch(ref, q),
  };

  private listNow(ref: CollectionRef, q: ListQuery): RawList {
    const selection = this.parseSelectors(ref.rt, ref.namespace, q);
    let listRv = this.rv, after: string | undefined;
    if (q.continue) {
      let token: unknown;
      try {
        token = JSON.parse(atob(q.continue));
      } catch {
        throw badRequest("invalid continue token");
      }
      if (!isJsonObject(token) || !Predicate.isNumber(token.rv) || !Predicate.isString(token.after)) {
        throw badRequest("invalid continue token");
      }
      if (token.rv < this.compactedRv) {
        throw new ApiFailure(
          failureStatus(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result.",
          ),
        );
      }
      listRv = token.rv;
      after = token.after;
    }
    const limit = q.limit && q.limit > 0 ? q.limit : Infinity;
    const { items: page, more } = this.bucket(ref.rt).select(selection, after, limit);
    return {
      items: page.map(([, s]) => s.raw),
      resourceVersion: String(listRv),
      ...(more ? { continue: btoa(JSON.stringify({ rv: listRv, after: page[page.length - 1][0] })) } : {}),
    };
  }

  private create(ref: CollectionRef, body: JsonObject, params: WriteParams, owners?: Ownership) {
    const t: RequestTarget = { verb: "create", kind: ref.rt.kind, namespace: ref.namespace, name: metaOf(body).name };
    const resource = { group: ref.rt.group, version: ref.rt.version, kind: ref.rt.kind, plural: ref.rt.plural };
    return Effect.gen({ self: this }, function* () {
      const base = {
        operation: "CREATE" as const,
        resource,
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        dryRun: params.dryRun ?? false,
      };
      const mutated = (yield* this.admit("mutating", { ...base, name: metaOf(body).name ?? "", object: body }, t)) ??
        body;
      for (let i = 0; i < 8; i++) {
        const prepared = yield* this.run(t, () => {
          const p = this.prepareCreate(ref.rt, ref.namespace, mutated);
          this.checkSchema(ref.rt, p, String((p.metadata as JsonObject).name));
          return p;
        });
        const name = String((prepared.metadata as JsonObject).name);
        yield* this.admit("validating", { ...base, name, object: prepared }, t);
        const done = yield* this.run({ ...t, name }, () => {
          const objRef = { rt: ref.rt, namespace: ref.namespace, name };
          const key = this.key(objRef);
          if (this.bucket(ref.rt).has(key)) {
            if (metaOf(mutated).name === undefined) return undefined; // generated name taken: pick another
            throw new ApiFailure(
              failureStatus(409, "AlreadyExists", `${resourceName(ref.rt)} "${name}" already exists`, {
                name,
                group: ref.rt.group,
                kind: ref.rt.plural,
              }),
            );
          }
          if (params.dryRun) return prepared;
          (prepared.metadata as JsonObject).resourceVersion = String(this.rv + 1);
          deepFreeze(prepared);
          this.bucket(ref.rt).set(key, { raw: prepared, owners: owners ?? new Map() });
          this.record({ bucket: bucketOf(ref.rt), type: "ADDED", object: prepared });
          return prepared;
        });
        if (done !== undefined) return done;
      }
      return yield* this.run(t, () => {
        throw new ApiFailure(failureStatus(409, "AlreadyExists", "could not generate a unique name"));
      });
    });
  }

  private patch(ref: ObjectRef, patch: Patch, params: WriteParams): Effect.Effect<JsonObject, KubeError> {
    const t: RequestTarget = { verb: "patch", kind: ref.rt.kind, namespace: ref.namespace, name: ref.name };
    const guard = <A>(f: () => A): A => {
      try {
        return f();
      } catch (e) {
        if (e instanceof PatchError) throw new ApiFailure(failureStatus(422, "Invalid", e.message));
        throw e;
      }
    };
    const keepVersion = (cur: Stored, next: unknown): { object: JsonObject } => {
      if (!isJsonObject(next)) throw badRequest("the patch does not produce an object");
      const before = (cur.raw.metadata as JsonObject).resourceVersion;
      const after = metaOf(next).resourceVersion;
      // A resourceVersion in the patch is a precondition.
      if (after !== undefined && after !== before) {
        throw conflict(
          ref.rt,
          ref.name,
          "the object has been modified; please apply your changes to the latest version and try again",
        );
      }
      return { object: next };
    };
    switch (patch.type) {
      case "merge":
        return this.update("patch", ref, params, (cur) => keepVersion(cur, mergePatch(cur.raw, patch.patch)));
      case "json":
        return this.update("patch", ref, params, (cur) => keepVersion(cur, guard(() => jsonPatch(cur.raw, patch.ops))));
      case "apply": {
        const manager = params.fieldManager ?? "";
        const config = isJsonObject(patch.object) ? patch.object : {};
        const applied = (existing: JsonObject | undefined, owners: Ownership) => {
          const r = serverSideApply(existing, config, manager, owners, patch.force ?? false);
          if ("conflicts" in r) {
            throw conflict(
              ref.rt,
              ref.name,
              `Apply failed with ${r.conflicts.length} conflict(s): ${r.conflicts.join("; ")}`,
            );
          }
          return r;
        };
        return Effect.gen({ self: this }, function* () {
          const exists = this.bucket(ref.rt).has(this.key(ref));
          if (!exists) {
            const r = yield* this.run(t, () => applied(undefined, new Map()));
            return yield* this.create(ref, r.object, params, r.owners).pipe(
              // Lost a race with another creator: apply on top of theirs.
              Effect.catchTag("KubeAlreadyExists", () => this.patch(ref, patch, params)),
            );
          }
          return yield* this.update("patch", ref, params, (cur) => applied(cur.raw, cur.owners));
        });
      }
    }
  }

  private delete(ref: ObjectRef, options: Parameters<KubeBackend["delete"]>[1]): Effect.Effect<JsonObject, KubeError> {
    const t: RequestTarget = { verb: "delete", kind: ref.rt.kind, namespace: ref.namespace, name: ref.name };
    return Effect.gen({ self: this }, function* () {
      const cur = yield* this.run(t, () => {
        const s = this.lookup(ref);
        const m = s.raw.metadata as JsonObject;
        const pre = options.preconditions;
        if (pre?.uid !== undefined && pre.uid !== m.uid) {
          throw conflict(
            ref.rt,
            ref.name,
            `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${m.uid}`,
          );
        }
        if (pre?.resourceVersion !== undefined && pre.resourceVersion !== m.resourceVersion) {
          throw conflict(
            ref.rt,
            ref.name,
            `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${m.resourceVersion}`,
          );
        }
        return s;
      });
      const request: AdmissionRequest = {
        operation: "DELETE",
        resource: { group: ref.rt.group, version: ref.rt.version, kind: ref.rt.kind, plural: ref.rt.plural },
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        name: ref.name,
        oldObject: cur.raw,
        dryRun: options.dryRun ?? false,
      };
      yield* this.admit("mutating", request, t);
      yield* this.admit("validating", request, t);
      return yield* this.run(t, () => {
        const s = this.lookup(ref);
        if (s !== cur) throw conflict(ref.rt, ref.name, "the object was modified during deletion; try again");
        if (options.dryRun) return s.raw;
        const next = clone(s.raw);
        const meta = next.metadata as JsonObject;
        const finalizers = Array.isArray(meta.finalizers) ? [...meta.finalizers] : [];
        const terminating = meta.deletionTimestamp !== undefined;
        const policyFinalizer = options.propagationPolicy === "Foreground"
          ? "foregroundDeletion"
          : options.propagationPolicy === "Orphan"
          ? "orphan"
          : undefined;
        if (!terminating && policyFinalizer && !finalizers.includes(policyFinalizer)) finalizers.push(policyFinalizer);
        const grace = this.gracePeriod(ref.rt, next, options.gracePeriodSeconds);
        if (terminating) {
          // Deleting again only shortens a pod's grace period.
          const left = Predicate.isNumber(meta.deletionGracePeriodSeconds) ? meta.deletionGracePeriodSeconds : 0;
          if (grace < left) {
            meta.deletionGracePeriodSeconds = grace;
            meta.deletionTimestamp = later(grace);
            if (finalizers.length === 0 && grace === 0) return this.remove(ref, next);
            return this.commitUpdate(ref, s, next, s.owners);
          }
          return s.raw;
        }
        if (finalizers.length === 0 && grace === 0) {
          this.remove(ref, next);
          return {
            kind: "Status",
            apiVersion: "v1",
            status: "Success",
            details: { name: ref.name, kind: ref.rt.plural },
          };
        }
        meta.finalizers = finalizers;
        meta.deletionTimestamp = later(grace);
        meta.deletionGracePeriodSeconds = grace;
        if (finalizers.length === 0) delete meta.finalizers;
        const bucket = bucketOf(ref.rt);
        meta.resourceVersion = String(this.rv + 1);
        deepFreeze(next);
        this.bucket(ref.rt).set(this.key(ref), { raw: next, owners: s.owners });
        this.record({ bucket, type: "MODIFIED", object: next, previous: s.raw });
        return next;
      });
    });
  }

  /** Pods bound to a node wait for their kubelet (the grace period); everything else goes at once. */
  private gracePeriod(rt: AnyResourceType, obj: JsonObject, requested: number | undefined): number {
    if (!(rt.group === "" && rt.plural === "pods")) return 0;
    const spec = isJsonObject(obj.spec) ? obj.spec : {};
    const phase = isJsonObject(obj.status) ? obj.status.phase : undefined;
    if (!Predicate.isString(spec.nodeName) || spec.nodeName === "" || phase === "Succeeded" || phase === "Failed") {
      return 0;
    }
    const dflt = Predicate.isNumber(spec.terminationGracePeriodSeconds) ? spec.terminationGracePeriodSeconds : 30;
    return Math.max(0, requested ?? dflt);
  }

  private watch(ref: CollectionRef, q: WatchQuery): Stream.Stream<RawWatchEvent, KubeError> {
    const t: RequestTarget = { verb: "watch", kind: ref.rt.kind, namespace: ref.namespace };
    return Stream.callback<RawWatchEvent, KubeError>((queue) =>
      Effect.gen({ self: this }, function* () {
        const selection = yield* this.run(t, () => this.parseSelectors(ref.rt, ref.namespace, q));
        const bucket = bucketOf(ref.rt);
        const watcher: Watcher = { bucket, selection, queue };
        const fromNow = q.resourceVersion === "" || q.resourceVersion === "0";
        const from = fromNow ? this.rv : Number(q.resourceVersion);
        yield* this.run(t, () => {
          if (!Number.isInteger(from)) throw badRequest(`invalid resourceVersion "${q.resourceVersion}"`);
          if (from < this.compactedRv) {
            throw new ApiFailure(
              failureStatus(410, "Expired", `too old resource version: ${from} (${this.compactedRv})`),
            );
          }
        });
        // Replay and registration happen in one synchronous step, so no write can fall between them.
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            if (fromNow) {
              for (const [, s] of this.bucket(ref.rt).select(selection, undefined, Infinity).items) {
                Queue.offerUnsafe(queue, { type: "ADDED", object: s.raw });
              }
            } else {
              for (const e of this.history) if (e.rv > from) this.deliver(watcher, e);
            }
            let open = this.watchers.get(bucket);
            if (!open) this.watchers.set(bucket, open = new WatcherRoutes());
            open.add(watcher);
          }),
          () => Effect.sync(() => this.watchers.get(bucket)?.delete(watcher)),
        );
        if (q.bookmarks) {
          yield* Effect.sync(() =>
            Queue.offerUnsafe(queue, {
              type: "BOOKMARK",
              object: {
                apiVersion: apiVersionOf(ref.rt),
                kind: ref.rt.kind,
                metadata: { resourceVersion: String(this.rv) },
              },
            })
          ).pipe(
            Effect.delay(this.bookmarkIntervalMs),
            Effect.repeat(Schedule.forever),
            Effect.forkScoped,
          );
        }
      })
    );
  }
}

/** Field labels of a bucket beyond metadata.name and metadata.namespace. */
const indexedFields = (bucket: string): ReadonlyArray<string> => supportedFieldLabels[bucket] ?? [];

function ownersEqual(a: Ownership, b: Ownership): boolean {
  if (a.size !== b.size) return false;
  for (const [m, s] of a) {
    const o = b.get(m);
    if (!o || o.size !== s.size || [...s].some((p) => !o.has(p))) return false;
  }
  return true;
}

/** The Kube port over a memory store (a fresh one unless given). */
export const makeMemoryKube = (
  server: MemoryApiServer = new MemoryApiServer(),
): Effect.Effect<KubeService, never, Scope.Scope> => makeKube(server.backend);

/** A Kube layer over `server`; share the server to inspect or drive it from a test or the simulation. */
export const layerMemoryKube = (server: MemoryApiServer = new MemoryApiServer()): Layer.Layer<Kube> =>
  Layer.effect(Kube, makeMemoryKube(server));
