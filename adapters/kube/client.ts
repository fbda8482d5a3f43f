// Builds the Kube port on top of a backend (live HTTP or the memory store): encodes writes and decodes answers
// with each ResourceType's Schema, pages through lists, turns one-shot watches into the resilient watch and
// shares informers per process.
import { Effect, Predicate, RcMap, Schema, type Scope, Stream } from "effect";
import {
  apiVersionOf,
  type DeleteResult,
  type Informer,
  type InformerOptions,
  KubeBadRequest,
  KubeDecodeError,
  type KubeError,
  type KubeService,
  type ListOptions,
  objectKey,
  type ResourceType,
  type WatchEvent,
  type WatchOptions,
  type WriteOptions,
} from "../../core/ports/kube.ts";
import { ObjectMeta } from "../../core/api/meta.ts";
import type { Answer, AnyResourceType, KubeBackend, RawWatchEvent } from "./backend.ts";
import { type Keyed, makeInformer } from "./informer.ts";
import { isJsonObject, type JsonObject } from "./patch.ts";
import { resilientWatch } from "./watch.ts";

export interface Meta {
  readonly name?: string;
  readonly namespace?: string;
  readonly resourceVersion?: string;
  readonly deletionTimestamp?: string;
  readonly finalizers?: ReadonlyArray<string>;
  readonly deletionGracePeriodSeconds?: number;
}

/** The metadata fields the adapters need, read from a raw object without trusting its shape. */
export function metaOf(obj: unknown): Meta {
  const m = isJsonObject(obj) && isJsonObject(obj.metadata) ? obj.metadata : {};
  const s = (k: string) => Predicate.isString(m[k]) && m[k] !== "" ? m[k] as string : undefined;
  const fin = Array.isArray(m.finalizers) ? m.finalizers.filter(Predicate.isString) : undefined;
  const grace = Predicate.isNumber(m.deletionGracePeriodSeconds) ? m.deletionGracePeriodSeconds : undefined;
  return {
    ...(s("name") ? { name: s("name") } : {}),
    ...(s("namespace") ? { namespace: s("namespace") } : {}),
    ...(s("resourceVersion") ? { resourceVersion: s("resourceVersion") } : {}),
    ...(s("deletionTimestamp") ? { deletionTimestamp: s("deletionTimestamp") } : {}),
    ...(fin ? { finalizers: fin } : {}),
    ...(grace !== undefined ? { deletionGracePeriodSeconds: grace } : {}),
  };
}

const where = (verb: string, rt: AnyResourceType, namespace?: string, name?: string) => ({
  verb,
  kind: rt.kind,
  ...(namespace ? { namespace } : {}),
  ...(name ? { objectName: name } : {}),
});

/** Decodes an object the apiserver sent (or a write was given) with its ResourceType's Schema: a KubeDecodeError names it. */
export const decodeWith =
  <A, I>(rt: ResourceType<A, I>, verb: string) => (raw: unknown): Effect.Effect<A, KubeError> => {
    const meta = metaOf(raw);
    return Schema.decodeUnknownEffect(rt.schema)(raw).pipe(
      Effect.mapError((e) =>
        new KubeDecodeError({ ...where(verb, rt, meta.namespace, meta.name), detail: e.message.slice(0, 1000) })
      ),
    );
  };

/** The metadata of a write's answer: a PartialObjectMetadata from the apiserver, a whole object from the memory store. */
const decodeMetadata = (rt: AnyResourceType, verb: string) => (raw: JsonObject): Effect.Effect<ObjectMeta, KubeError> =>
  Schema.decodeUnknownEffect(ObjectMeta)(raw.metadata).pipe(
    Effect.mapError((e) =>
      new KubeDecodeError({
        ...where(verb, rt, metaOf(raw).namespace, metaOf(raw).name),
        detail: e.message.slice(0, 1000),
      })
    ),
  );

/** Namespaced single-object requests need a namespace; cluster-scoped ones must not send one. */
const scopeNamespace = (
  verb: string,
  rt: AnyResourceType,
  namespace: string | undefined,
  name?: string,
): Effect.Effect<string | undefined, KubeError> => {
  if (!rt.namespaced) return Effect.succeed(undefined);
  if (namespace) return Effect.succeed(namespace);
  return Effect.fail(
    new KubeBadRequest({
      ...where(verb, rt, undefined, name),
      code: 400,
      detail: `${rt.kind} is namespaced: a namespace is required`,
    }),
  );
};

interface Encoded {
  readonly body: JsonObject;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
}

/** Encodes an object for a write, stamping apiVersion/kind and settling its namespace. */
const encodeFor = <A, I>(
  verb: string,
  rt: ResourceType<A, I>,
  object: A,
  namespaceOption: string | undefined,
): Effect.Effect<Encoded, KubeError> =>
  Effect.gen(function* () {
    const raw = yield* Schema.encodeUnknownEffect(rt.schema)(object).pipe(
      Effect.mapError((e) => new KubeDecodeError({ ...where(verb, rt), detail: e.message.slice(0, 1000) })),
    );
    if (!isJsonObject(raw)) {
      return yield* new KubeDecodeError({ ...where(verb, rt), detail: "an object must encode to a JSON object" });
    }
    const meta = metaOf(raw);
    if (rt.namespaced && meta.namespace && namespaceOption && meta.namespace !== namespaceOption) {
      return yield* new KubeBadRequest({
        ...where(verb, rt, namespaceOption, meta.name),
        code: 400,
        detail: `metadata.namespace ${meta.namespace} differs from the requested namespace ${namespaceOption}`,
      });
    }
    const namespace = yield* scopeNamespace(verb, rt, meta.namespace ?? namespaceOption, meta.name);
    const metadata: JsonObject = isJsonObject(raw.metadata) ? { ...raw.metadata } : {};
    if (namespace) metadata.namespace = namespace;
    else delete metadata.namespace;
    return {
      body: { ...raw, apiVersion: apiVersionOf(rt), kind: rt.kind, metadata },
      namespace,
      name: meta.name,
    };
  });

const missingName = (verb: string, rt: AnyResourceType, namespace: string | undefined) =>
  new KubeBadRequest({ ...where(verb, rt, namespace), code: 400, detail: "metadata.name is required" });

export interface MakeKubeOptions {
  /** Default page size for lists (default 500). */
  readonly pageSize?: number;
}

/**
 * Decodes per resource type that remember what they decoded from a frozen object (the memory store's objects never
 * change once stored): a write's answer, the watch event of that write to every watcher, later gets and relists of
 * the unchanged object all share one decode. Other objects (the live apiserver's) are decoded each time.
 */
function sharedDecodes() {
  const caches = new WeakMap<object, WeakMap<JsonObject, Keyed<unknown>>>();
  const cacheOf = <A, I>(rt: ResourceType<A, I>): WeakMap<JsonObject, Keyed<A>> => {
    let c = caches.get(rt);
    if (!c) caches.set(rt, c = new WeakMap());
    return c as WeakMap<JsonObject, Keyed<A>>;
  };
  const keyed = <A, I>(rt: ResourceType<A, I>, verb: string) => {
    const decoded = cacheOf(rt);
    return (raw: unknown): Effect.Effect<Keyed<A>, KubeError> => {
      const hit = isJsonObject(raw) ? decoded.get(raw) : undefined;
      if (hit) return Effect.succeed(hit);
      return Effect.map(decodeWith(rt, verb)(raw), (object): Keyed<A> => {
        const m = metaOf(raw);
        const k = { key: objectKey(m.namespace, m.name ?? ""), object, resourceVersion: m.resourceVersion ?? "" };
        if (isJsonObject(raw) && Object.isFrozen(raw)) decoded.set(raw, k);
        return k;
      });
    };
  };
  const object = <A, I>(rt: ResourceType<A, I>, verb: string) => {
    const k = keyed(rt, verb);
    return (raw: unknown): Effect.Effect<A, KubeError> => Effect.map(k(raw), (x) => x.object);
  };
  return { keyed, object };
}
type SharedDecodes = ReturnType<typeof sharedDecodes>;

/** The request verbs of the Kube port over a backend; `listRaw` (undecoded, all pages) serves the watches too. */
function requests(backend: KubeBackend, options: MakeKubeOptions, decodes: SharedDecodes) {
  const get: KubeService["get"] = (rt, name, opts = {}) =>
    Effect.gen(function* () {
      const namespace = yield* scopeNamespace("get", rt, opts.namespace, name);
      const raw = yield* backend.get({ rt, namespace, name });
      return yield* decodes.object(rt, "get")(raw);
    });

  const listRaw = (rt: AnyResourceType, opts: ListOptions) =>
    Effect.gen(function* () {
      const namespace = rt.namespaced ? opts.namespace : undefined;
      const limit = opts.pageSize ?? options.pageSize ?? 500;
      const query = {
        ...(opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
        ...(opts.fieldSelector ? { fieldSelector: opts.fieldSelector } : {}),
        limit,
      };
      const items: JsonObject[] = [];
      let page = yield* backend.list({ rt, namespace }, query);
      const resourceVersion = page.resourceVersion;
      items.push(...page.items);
      while (page.continue) {
        page = yield* backend.list({ rt, namespace }, { ...query, continue: page.continue });
        items.push(...page.items);
      }
      return { items, resourceVersion };
    }).pipe(
      // A continue token can expire (410) between pages; a fresh list is consistent again. Three tries.
      Effect.retry({ times: 2, while: (e: KubeError) => e._tag === "KubeGone" }),
    );

  const list: KubeService["list"] = (rt, opts = {}) =>
    Effect.gen(function* () {
      const raw = yield* listRaw(rt, opts);
      const items = yield* Effect.forEach(raw.items, decodes.object(rt, "list"));
      return { items, resourceVersion: raw.resourceVersion };
    });

  const createRaw = <A, I>(rt: ResourceType<A, I>, object: A, opts: WriteOptions, answer: Answer) =>
    Effect.gen(function* () {
      const enc = yield* encodeFor("create", rt, object, opts.namespace);
      // Creating from a copy of a stored object is common; the apiserver refuses a set resourceVersion.
      const { resourceVersion: _rv, ...metadata } = enc.body.metadata as JsonObject;
      const body = { ...enc.body, metadata };
      return yield* backend.create({ rt, namespace: enc.namespace }, body, { ...writeParams(opts), answer });
    });

  const replaceRaw = <A, I>(
    verb: "update" | "updateStatus",
    rt: ResourceType<A, I>,
    object: A,
    opts: WriteOptions,
    answer: Answer,
  ) =>
    Effect.gen(function* () {
      const enc = yield* encodeFor(verb, rt, object, opts.namespace);
      if (!enc.name) return yield* missingName(verb, rt, enc.namespace);
      return yield* backend.replace(
        { rt, namespace: enc.namespace, name: enc.name },
        enc.body,
        { ...writeParams(opts), answer, ...(verb === "updateStatus" ? { subresource: "status" as const } : {}) },
      );
    });

  const create: KubeService["create"] = (rt, object, opts = {}) =>
    Effect.flatMap(createRaw(rt, object, opts, "object"), decodes.object(rt, "create"));

  const replace =
    (verb: "update" | "updateStatus") => <A, I>(rt: ResourceType<A, I>, object: A, opts: WriteOptions = {}) =>
      Effect.flatMap(replaceRaw(verb, rt, object, opts, "object"), decodes.object(rt, verb));

  const createReturningMetadata: KubeService["createReturningMetadata"] = (rt, object, opts = {}) =>
    Effect.flatMap(createRaw(rt, object, opts, "metadata"), decodeMetadata(rt, "create"));

  const updateReturningMetadata: KubeService["updateReturningMetadata"] = (rt, object, opts = {}) =>
    Effect.flatMap(replaceRaw("update", rt, object, opts, "metadata"), decodeMetadata(rt, "update"));

  const patch: KubeService["patch"] = (rt, name, p, opts = {}) =>
    Effect.gen(function* () {
      const namespace = yield* scopeNamespace("patch", rt, opts.namespace, name);
      if (p.type === "apply" && !opts.fieldManager) {
        return yield* new KubeBadRequest({
          ...where("patch", rt, namespace, name),
          code: 400,
          detail: "server-side apply needs a fieldManager",
        });
      }
      const body = p.type === "apply"
        ? {
          ...p,
          object: {
            ...(isJsonObject(p.object) ? p.object : {}),
            apiVersion: apiVersionOf(rt),
            kind: rt.kind,
            metadata: {
              ...(isJsonObject(p.object) && isJsonObject(p.object.metadata) ? p.object.metadata : {}),
              name,
              ...(namespace ? { namespace } : {}),
            },
          },
        }
        : p;
      const raw = yield* backend.patch({ rt, namespace, name }, body, {
        ...writeParams(opts),
        ...(opts.subresource ? { subresource: opts.subresource } : {}),
      });
      return yield* decodes.object(rt, "patch")(raw);
    });

  const del: KubeService["delete"] = <A, I>(rt: ResourceType<A, I>, name: string, opts: DeleteOptionsArg = {}) =>
    Effect.gen(function* () {
      const namespace = yield* scopeNamespace("delete", rt, opts.namespace, name);
      const { namespace: _ns, ...rest } = opts;
      const raw = yield* backend.delete({ rt, namespace, name }, rest);
      const meta = metaOf(raw);
      const pending = raw.kind !== "Status" && meta.deletionTimestamp !== undefined &&
        ((meta.finalizers?.length ?? 0) > 0 || (meta.deletionGracePeriodSeconds ?? 0) > 0);
      if (!pending) return { _tag: "Deleted" } as DeleteResult<A>;
      const object = yield* decodes.object(rt, "delete")(raw);
      return { _tag: "Pending", object } as DeleteResult<A>;
    });

  return {
    listRaw,
    verbs: {
      get,
      list,
      create,
      update: replace("update"),
      updateStatus: replace("updateStatus"),
      patch,
      delete: del,
      createReturningMetadata,
      updateReturningMetadata,
    },
  };
}

/** Watches over a backend, with decodes shared between watchers of one resource type (and with the requests). */
function watches(backend: KubeBackend, listRaw: ReturnType<typeof requests>["listRaw"], decodes: SharedDecodes) {
  /** The resilient watch over keyed objects; `watch` and informers both use it. */
  const watchKeyed = <A, I>(rt: ResourceType<A, I>, opts: WatchOptions): Stream.Stream<
    WatchEvent<Keyed<A>>,
    KubeError
  > => {
    const namespace = rt.namespaced ? opts.namespace : undefined;
    const keyed = (verb: string) => decodes.keyed(rt, verb);
    const toEvent = (ev: RawWatchEvent): Effect.Effect<WatchEvent<Keyed<A>>, KubeError> => {
      const resourceVersion = metaOf(ev.object).resourceVersion ?? "";
      if (ev.type === "BOOKMARK") return Effect.succeed({ _tag: "Bookmark", resourceVersion });
      const tag = ev.type === "ADDED" ? "Added" : ev.type === "MODIFIED" ? "Modified" : "Deleted";
      return Effect.map(keyed("watch")(ev.object), (object) => ({ _tag: tag, object, resourceVersion }));
    };
    const filters = {
      ...(opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
      ...(opts.fieldSelector ? { fieldSelector: opts.fieldSelector } : {}),
    };
    return resilientWatch<Keyed<A>>({
      list: Effect.gen(function* () {
        const raw = yield* listRaw(rt, { ...filters, ...(namespace ? { namespace } : {}) });
        const items = yield* Effect.forEach(raw.items, keyed("list"));
        return { items, resourceVersion: raw.resourceVersion };
      }),
      watchFrom: (resourceVersion) =>
        backend.watch({ rt, namespace }, { ...filters, resourceVersion, bookmarks: opts.bookmarks ?? true }).pipe(
          Stream.mapEffect(toEvent),
        ),
    }, {
      ...(opts.resourceVersion ? { resourceVersion: opts.resourceVersion } : {}),
      ...(opts.retry ? { retry: opts.retry } : {}),
    });
  };

  const watch: KubeService["watch"] = (rt, opts = {}) =>
    watchKeyed(rt, opts).pipe(Stream.map((ev) => {
      switch (ev._tag) {
        case "Sync":
          return { ...ev, items: ev.items.map((k) => k.object) };
        case "Bookmark":
          return ev;
        default:
          return { ...ev, object: ev.object.object };
      }
    }));

  return { watchKeyed, watch };
}

/** The Kube port over a backend. Scoped: informers started through it stop with the scope. */
export const makeKube = (
  backend: KubeBackend,
  options: MakeKubeOptions = {},
): Effect.Effect<KubeService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const decodes = sharedDecodes();
    const { listRaw, verbs } = requests(backend, options, decodes);
    const { watchKeyed, watch } = watches(backend, listRaw, decodes);

    // Informers are shared per (resource type object, filters). The key holds the descriptor's identity, not its
    // name: two descriptors of one resource may decode with different schemas.
    const typeIds = new WeakMap<object, number>();
    let nextTypeId = 0;
    const starters = new Map<string, Effect.Effect<Informer<unknown>, never, Scope.Scope>>();
    const informers = yield* RcMap.make({
      lookup: (key: string) => starters.get(key) ?? Effect.die(`no informer registered under ${key}`),
    });
    const informer: KubeService["informer"] = <A, I>(rt: ResourceType<A, I>, opts: InformerOptions = {}) => {
      let id = typeIds.get(rt);
      if (id === undefined) typeIds.set(rt, id = ++nextTypeId);
      const namespace = rt.namespaced ? opts.namespace : undefined;
      const key = JSON.stringify([id, namespace ?? "", opts.labelSelector ?? "", opts.fieldSelector ?? ""]);
      if (!starters.has(key)) {
        const describe = `${rt.plural}${rt.group ? `.${rt.group}` : ""}${namespace ? ` in ${namespace}` : ""}`;
        const start = makeInformer(watchKeyed(rt, { ...opts, ...(namespace ? { namespace } : {}) }), describe);
        // Stored type-erased; the key pins the descriptor, so the cast back below is to the same A.
        starters.set(key, start as unknown as Effect.Effect<Informer<unknown>, never, Scope.Scope>);
      }
      return RcMap.get(informers, key) as unknown as Effect.Effect<Informer<A>, never, Scope.Scope>;
    };

    return { ...verbs, watch, informer } satisfies KubeService;
  });

type DeleteOptionsArg = Parameters<KubeService["delete"]>[2];

const writeParams = (o: WriteOptions) => ({
  ...(o.dryRun ? { dryRun: true } : {}),
  ...(o.fieldManager ? { fieldManager: o.fieldManager } : {}),
});
