// The Kubernetes API as the core sees it. Live layer: adapters/kube (client-node); in-memory layer:
// adapters/kube (a store with real apiserver semantics). See issue "Platform adapters".
import type { Schema } from "effect";

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
