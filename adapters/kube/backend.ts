// What a Kube layer must provide: the apiserver's REST verbs on raw JSON objects. adapters/kube/client.ts
// builds the Kube port on top of it (encoding and decoding, paging, the resilient watch, informers), so the
// live (HTTP) and memory backends only differ where the apiserver itself would.
import type { Effect, Stream } from "effect";
import type { DeleteOptions, KubeError, Patch, ResourceType } from "../../core/ports/kube.ts";
import type { JsonObject } from "./patch.ts";

/** Any resource type (ResourceType is covariant); backends read the descriptor, the memory store its schema. */
export type AnyResourceType = ResourceType<unknown, unknown>;

export interface CollectionRef {
  readonly rt: AnyResourceType;
  /** Required for single objects of namespaced kinds; optional (all namespaces) for lists and watches. */
  readonly namespace?: string;
}

export interface ObjectRef extends CollectionRef {
  readonly name: string;
}

export interface ListQuery {
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  readonly limit?: number;
  readonly continue?: string;
}

export interface RawList {
  readonly items: ReadonlyArray<JsonObject>;
  readonly resourceVersion: string;
  /** Set when more pages follow. */
  readonly continue?: string;
}

/** What a write answers with: the stored object, or (when the caller keeps its copy) its metadata only. */
export type Answer = "object" | "metadata";

export interface WriteParams {
  readonly dryRun?: boolean;
  readonly fieldManager?: string;
  readonly subresource?: "status";
  /** Default "object". A backend may answer with the whole object anyway (the memory store does). */
  readonly answer?: Answer;
}

export interface WatchQuery {
  readonly resourceVersion: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  readonly bookmarks: boolean;
}

export interface RawWatchEvent {
  readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK";
  readonly object: JsonObject;
}

export interface KubeBackend {
  readonly get: (ref: ObjectRef) => Effect.Effect<JsonObject, KubeError>;
  readonly list: (ref: CollectionRef, query: ListQuery) => Effect.Effect<RawList, KubeError>;
  readonly create: (ref: CollectionRef, body: JsonObject, params: WriteParams) => Effect.Effect<JsonObject, KubeError>;
  readonly replace: (ref: ObjectRef, body: JsonObject, params: WriteParams) => Effect.Effect<JsonObject, KubeError>;
  readonly patch: (ref: ObjectRef, patch: Patch, params: WriteParams) => Effect.Effect<JsonObject, KubeError>;
  /** The answer is a Status when the object is gone, or the object itself (still there when pending). */
  readonly delete: (
    ref: ObjectRef,
    options: Omit<DeleteOptions, "namespace">,
  ) => Effect.Effect<JsonObject, KubeError>;
  /** One watch connection; ends when the server closes it. A 410 (also as an ERROR event) fails with KubeGone. */
  readonly watch: (ref: CollectionRef, query: WatchQuery) => Stream.Stream<RawWatchEvent, KubeError>;
}
