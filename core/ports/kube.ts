// The Kubernetes API as the core sees it. Live layer: adapters/kube/live.ts (client-node + fetch); in-memory
// layer: adapters/kube/memory.ts (a store with real apiserver semantics). See issue "Platform adapters".
//
// Every object crossing this port is decoded with the Schema of its ResourceType. Schemas ignore fields they
// do not model, so a full `update` of an object owned by someone else would drop those fields: writers of
// foreign kinds use `patch` instead.
import { Context, type Effect, type Schedule, Schema, type Scope, type Stream, type SubscriptionRef } from "effect";
import type { ObjectMeta } from "../api/meta.ts";

/**
 * Names one API resource and the Schema that decodes its objects. Every kind danm touches has one
 * (core kinds in core/api/k8s.ts, danm kinds in core/api/danm.ts).
 */
export interface ResourceType<A, I = unknown> {
  /** API group; "" for the core group. */
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  /** Lower-case plural used in URLs, e.g. "danmnets". */
  readonly plural: string;
  readonly namespaced: boolean;
  readonly schema: Schema.Codec<A, I>;
}

/** "v1" for the core group, "group/version" otherwise. */
export const apiVersionOf = (rt: { readonly group: string; readonly version: string }): string =>
  rt.group === "" ? rt.version : `${rt.group}/${rt.version}`;

/** The key informers and the memory store use: "namespace/name", or "name" for cluster-scoped objects. */
export const objectKey = (namespace: string | undefined, name: string): string =>
  namespace ? `${namespace}/${name}` : name;

// ---------------------------------------------------------------------------------------------------------
// Errors. Each names the verb, the kind and namespace/name; `detail` carries the apiserver's own message.
// (No field is called `name`: it would shadow Error.name.)

const target = {
  verb: Schema.String,
  kind: Schema.String,
  namespace: Schema.optionalKey(Schema.String),
  objectName: Schema.optionalKey(Schema.String),
  detail: Schema.String,
};

interface Target {
  readonly verb: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly objectName?: string;
  readonly detail: string;
}

const describe = (e: Target, what: string): string => {
  const obj = e.objectName === undefined
    ? (e.namespace ? ` in namespace ${e.namespace}` : "")
    : ` ${e.namespace ? `${e.namespace}/` : ""}${e.objectName}`;
  return `${e.verb} ${e.kind}${obj}: ${what}${e.detail ? `: ${e.detail}` : ""}`;
};

export class KubeNotFound extends Schema.TaggedError<KubeNotFound>()("KubeNotFound", target) {
  override get message(): string {
    return describe(this, "not found");
  }
}

export class KubeAlreadyExists extends Schema.TaggedError<KubeAlreadyExists>()("KubeAlreadyExists", target) {
  override get message(): string {
    return describe(this, "already exists");
  }
}

/** 409: stale resourceVersion, failed precondition (uid/resourceVersion) or a server-side-apply field conflict. */
export class KubeConflict extends Schema.TaggedError<KubeConflict>()("KubeConflict", target) {
  override get message(): string {
    return describe(this, "conflict");
  }
}

export class KubeUnauthorized extends Schema.TaggedError<KubeUnauthorized>()("KubeUnauthorized", target) {
  override get message(): string {
    return describe(this, "unauthorized (401)");
  }
}

/** 403: RBAC, or an admission hook/webhook denying the request. */
export class KubeForbidden extends Schema.TaggedError<KubeForbidden>()("KubeForbidden", target) {
  override get message(): string {
    return describe(this, "forbidden");
  }
}

export const StatusCause = Schema.Struct({
  field: Schema.optionalKey(Schema.String),
  reason: Schema.optionalKey(Schema.String),
  message: Schema.optionalKey(Schema.String),
});
export type StatusCause = typeof StatusCause.Type;

/** 422: the object failed validation; `causes` lists the offending fields as the apiserver reports them. */
export class KubeInvalid extends Schema.TaggedError<KubeInvalid>()("KubeInvalid", {
  ...target,
  causes: Schema.Array(StatusCause),
}) {
  override get message(): string {
    return describe(this, "invalid");
  }
}

/** 410: the requested resourceVersion (watch start, list continue token) is older than what the server keeps. */
export class KubeGone extends Schema.TaggedError<KubeGone>()("KubeGone", target) {
  override get message(): string {
    return describe(this, "resource version too old (410 Gone)");
  }
}

/** Client-side request timeout, or 504 / a Status with reason Timeout. */
export class KubeTimeout extends Schema.TaggedError<KubeTimeout>()("KubeTimeout", target) {
  override get message(): string {
    return describe(this, "timed out");
  }
}

/** The server could not be reached or answered 429/5xx: worth retrying. */
export class KubeUnavailable extends Schema.TaggedError<KubeUnavailable>()("KubeUnavailable", {
  ...target,
  code: Schema.optionalKey(Schema.Number),
}) {
  override get message(): string {
    return describe(this, `unavailable${this.code ? ` (${this.code})` : ""}`);
  }
}

/** Any other 4xx: malformed request, bad selector, unsupported patch, missing namespace… */
export class KubeBadRequest extends Schema.TaggedError<KubeBadRequest>()("KubeBadRequest", {
  ...target,
  code: Schema.Number,
}) {
  override get message(): string {
    return describe(this, `bad request (${this.code})`);
  }
}

/** An object from the server (or one given to a write) does not fit the Schema of its ResourceType. */
export class KubeDecodeError extends Schema.TaggedError<KubeDecodeError>()("KubeDecodeError", target) {
  override get message(): string {
    return describe(this, "does not match its schema");
  }
}

export type KubeError =
  | KubeNotFound
  | KubeAlreadyExists
  | KubeConflict
  | KubeUnauthorized
  | KubeForbidden
  | KubeInvalid
  | KubeGone
  | KubeTimeout
  | KubeUnavailable
  | KubeBadRequest
  | KubeDecodeError;

/** Errors a watch (or a controller) should retry with backoff rather than give up on. */
export const isTransient = (e: KubeError): boolean => e._tag === "KubeUnavailable" || e._tag === "KubeTimeout";

// ---------------------------------------------------------------------------------------------------------
// Options and results

export interface ReadOptions {
  /** Required for namespaced kinds. */
  readonly namespace?: string;
}

export interface ListOptions {
  /** Omit to list namespaced kinds across all namespaces. */
  readonly namespace?: string;
  /** Equality- and set-based label selector, e.g. "app=x,tier in (a,b),!legacy". */
  readonly labelSelector?: string;
  /** e.g. "metadata.name=x,spec.nodeName=node1". */
  readonly fieldSelector?: string;
  /** Page size used while listing; the pages are fetched and joined transparently. Default 500. */
  readonly pageSize?: number;
}

export interface ListResult<A> {
  readonly items: ReadonlyArray<A>;
  /** The collection's resourceVersion: start a watch here to see every later change. */
  readonly resourceVersion: string;
}

export interface WriteOptions {
  /** For create/patch: defaults to the object's metadata.namespace (which wins when both are set). */
  readonly namespace?: string;
  /** Run admission and validation, persist nothing (dryRun=All). */
  readonly dryRun?: boolean;
  readonly fieldManager?: string;
}

export interface JsonPatchOperation {
  readonly op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  readonly path: string;
  readonly from?: string;
  readonly value?: unknown;
}

export type Patch =
  /** RFC 7386 JSON merge patch: objects merge, arrays are replaced, null deletes a key. */
  | { readonly type: "merge"; readonly patch: unknown }
  /** RFC 6902 JSON patch. */
  | { readonly type: "json"; readonly ops: ReadonlyArray<JsonPatchOperation> }
  /**
   * Server-side apply of a (partial) object; needs `fieldManager`. apiVersion, kind and metadata.name are
   * filled in from the resource type and the name argument when missing.
   */
  | { readonly type: "apply"; readonly object: unknown; readonly force?: boolean };

export interface PatchOptions extends WriteOptions {
  readonly subresource?: "status";
}

export interface DeleteOptions {
  readonly namespace?: string;
  readonly dryRun?: boolean;
  /** Delete only if the object still has this uid / resourceVersion (else KubeConflict). */
  readonly preconditions?: { readonly uid?: string; readonly resourceVersion?: string };
  readonly propagationPolicy?: "Foreground" | "Background" | "Orphan";
  readonly gracePeriodSeconds?: number;
}

export type DeleteResult<A> =
  | { readonly _tag: "Deleted" }
  /** Finalizers or a pod's grace period keep the object around; it carries a deletionTimestamp now. */
  | { readonly _tag: "Pending"; readonly object: A };

export interface WatchOptions {
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /**
   * Start after this resourceVersion (no initial Sync). Omitted: list first, emit a Sync with the current
   * objects, then watch from the list's resourceVersion.
   */
  readonly resourceVersion?: string;
  /** Ask the server for BOOKMARK events (default true). */
  readonly bookmarks?: boolean;
  /**
   * Backoff between reconnects after an error. Default: exponential from 200 ms capped at 30 s, jittered,
   * forever, for every error except decode, validation and bad-request errors.
   */
  readonly retry?: Schedule.Schedule<unknown, KubeError>;
}

/**
 * What a watch stream emits. Added/Modified/Deleted mirror the API's watch events; Bookmark only advances the
 * resourceVersion; Sync carries the complete current state (after the initial list, and after a relist forced
 * by 410 Gone: consumers rebuild their view from it).
 */
export type WatchEvent<A> =
  | { readonly _tag: "Added"; readonly object: A; readonly resourceVersion: string }
  | { readonly _tag: "Modified"; readonly object: A; readonly resourceVersion: string }
  | { readonly _tag: "Deleted"; readonly object: A; readonly resourceVersion: string }
  | { readonly _tag: "Bookmark"; readonly resourceVersion: string }
  | {
    readonly _tag: "Sync";
    readonly items: ReadonlyArray<A>;
    readonly resourceVersion: string;
    readonly reason: "initial" | "expired";
  };

export interface InformerOptions {
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
}

export interface InformerState<A> {
  /** False until the first list has been applied. */
  readonly synced: boolean;
  readonly resourceVersion: string;
  /** Keyed by objectKey(namespace, name). */
  readonly items: ReadonlyMap<string, A>;
}

export type InformerEvent<A> =
  /**
   * The full state: first element of every `changes` stream, and again after a relist (the differences the
   * relist uncovered are published as Added/Updated/Deleted just before it).
   */
  | { readonly _tag: "Synced"; readonly items: ReadonlyMap<string, A>; readonly resourceVersion: string }
  | { readonly _tag: "Added"; readonly key: string; readonly object: A }
  | { readonly _tag: "Updated"; readonly key: string; readonly object: A; readonly previous: A }
  | { readonly _tag: "Deleted"; readonly key: string; readonly object: A };

/**
 * An informer's objects filed under values derived from them (client-go's Indexer): `get(value)` answers what a scan
 * of the informer's latest state for objects filed under `value` would, without the scan.
 */
export interface InformerIndex<A> {
  readonly get: (value: string) => Effect.Effect<ReadonlyArray<A>>;
}

/** A list+watch cache shared by every caller asking for the same resource type and filters. */
export interface Informer<A> {
  /** The keyed snapshot; only the informer writes it. */
  readonly state: SubscriptionRef.SubscriptionRef<InformerState<A>>;
  /** Waits for the first list; fails if the underlying watch died for good before that. */
  readonly synced: Effect.Effect<void, KubeError>;
  /** A Synced with the current state (once synced), then every change, in order. */
  readonly changes: Stream.Stream<InformerEvent<A>, KubeError>;
  readonly get: (name: string, namespace?: string) => Effect.Effect<A | undefined>;
  readonly list: Effect.Effect<ReadonlyArray<A>>;
  /**
   * An index over the cache, kept up to date with it, filing each object under the values `valuesOf` gives. The
   * informer is shared, and so is its index per `valuesOf` function: pass a module-level function, not a closure.
   */
  readonly index: (valuesOf: (object: A) => ReadonlyArray<string>) => Effect.Effect<InformerIndex<A>>;
}

export interface KubeService {
  readonly get: <A, I>(rt: ResourceType<A, I>, name: string, options?: ReadOptions) => Effect.Effect<A, KubeError>;
  /** Follows continue tokens until the list is complete. */
  readonly list: <A, I>(rt: ResourceType<A, I>, options?: ListOptions) => Effect.Effect<ListResult<A>, KubeError>;
  readonly create: <A, I>(rt: ResourceType<A, I>, object: A, options?: WriteOptions) => Effect.Effect<A, KubeError>;
  /** Replaces the object; optimistic: a stale metadata.resourceVersion fails with KubeConflict. */
  readonly update: <A, I>(rt: ResourceType<A, I>, object: A, options?: WriteOptions) => Effect.Effect<A, KubeError>;
  /**
   * `create` and `update` for a writer that keeps its own copy of what it wrote (danm's IPAM blocks): the server
   * answers with the stored object's metadata only (PartialObjectMetadata), so neither side encodes and decodes a
   * big object a second time. Only for kinds that no admission plugin or defaulting changes.
   */
  readonly createReturningMetadata: <A, I>(
    rt: ResourceType<A, I>,
    object: A,
    options?: WriteOptions,
  ) => Effect.Effect<ObjectMeta, KubeError>;
  readonly updateReturningMetadata: <A, I>(
    rt: ResourceType<A, I>,
    object: A,
    options?: WriteOptions,
  ) => Effect.Effect<ObjectMeta, KubeError>;
  /** Replaces only `status` (the status subresource); everything else in `object` is ignored by the server. */
  readonly updateStatus: <A, I>(
    rt: ResourceType<A, I>,
    object: A,
    options?: WriteOptions,
  ) => Effect.Effect<A, KubeError>;
  readonly patch: <A, I>(
    rt: ResourceType<A, I>,
    name: string,
    patch: Patch,
    options?: PatchOptions,
  ) => Effect.Effect<A, KubeError>;
  readonly delete: <A, I>(
    rt: ResourceType<A, I>,
    name: string,
    options?: DeleteOptions,
  ) => Effect.Effect<DeleteResult<A>, KubeError>;
  /**
   * A never-ending watch: resumes from the last seen resourceVersion when the connection drops, relists on
   * 410 Gone (emitting a Sync), backs off on errors per `options.retry`, fails only on errors it will not retry.
   */
  readonly watch: <A, I>(rt: ResourceType<A, I>, options?: WatchOptions) => Stream.Stream<WatchEvent<A>, KubeError>;
  /**
   * The process-wide informer for this resource type and filters: the first caller starts its list+watch, later
   * callers share it; it stops when the last scope using it closes.
   */
  readonly informer: <A, I>(
    rt: ResourceType<A, I>,
    options?: InformerOptions,
  ) => Effect.Effect<Informer<A>, never, Scope.Scope>;
}

export class Kube extends Context.Service<Kube, KubeService>()("danm/core/ports/kube/Kube") {}
