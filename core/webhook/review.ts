// admission.k8s.io/v1 AdmissionReview: the request as the apiserver sends it (decoded with Schema, nothing trusted)
// and the responses we answer with. Mutations travel as RFC 6902 JSON patches computed by diffing the object
// before and after our changes, so only what we changed is sent.
import { Effect, Predicate, Schema, SchemaParser } from "effect";
import { problemsOf, renderProblems } from "../api/formats.ts";

const opt = Schema.optionalKey;

export const GroupVersionKind = Schema.Struct({ group: Schema.String, version: Schema.String, kind: Schema.String });
export const GroupVersionResource = Schema.Struct({
  group: Schema.String,
  version: Schema.String,
  resource: Schema.String,
});

export const Operation = Schema.Literals(["CREATE", "UPDATE", "DELETE", "CONNECT"]);
export type Operation = typeof Operation.Type;

export const UserInfo = Schema.Struct({
  username: opt(Schema.String),
  uid: opt(Schema.String),
  groups: opt(Schema.Array(Schema.String)),
  extra: opt(Schema.Record(Schema.String, Schema.Array(Schema.String))),
});

export const AdmissionRequest = Schema.Struct({
  uid: Schema.String,
  kind: GroupVersionKind,
  resource: GroupVersionResource,
  subResource: opt(Schema.String),
  requestKind: opt(GroupVersionKind),
  requestResource: opt(GroupVersionResource),
  requestSubResource: opt(Schema.String),
  name: opt(Schema.String),
  namespace: opt(Schema.String),
  operation: Operation,
  userInfo: UserInfo,
  // The objects themselves are decoded per kind by the handlers (strictly for user input).
  object: opt(Schema.NullOr(Schema.Unknown)),
  oldObject: opt(Schema.NullOr(Schema.Unknown)),
  dryRun: opt(Schema.Boolean),
  options: opt(Schema.NullOr(Schema.Unknown)),
});
export type AdmissionRequest = typeof AdmissionRequest.Type;

export const AdmissionReview = Schema.Struct({
  apiVersion: Schema.Literal("admission.k8s.io/v1"),
  kind: Schema.Literal("AdmissionReview"),
  request: AdmissionRequest,
});
export type AdmissionReview = typeof AdmissionReview.Type;

export class ReviewDecodeError extends Schema.TaggedError<ReviewDecodeError>()("ReviewDecodeError", {
  detail: Schema.String,
}) {
  override get message(): string {
    return `not an admission.k8s.io/v1 AdmissionReview: ${this.detail}`;
  }
}

export function decodeReview(body: unknown): Effect.Effect<AdmissionReview, ReviewDecodeError> {
  return SchemaParser.decodeUnknownEffect(AdmissionReview)(body, { errors: "all" }).pipe(
    Effect.mapError((issue) => new ReviewDecodeError({ detail: renderProblems(problemsOf(issue)) })),
  );
}

// ---- Responses ----------------------------------------------------------------------------------------------------

export interface StatusCause {
  readonly field?: string;
  readonly message: string;
  /** The rule that refused the request (a cause "reason" in metav1.Status terms). */
  readonly reason?: string;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: {
    readonly code: number;
    readonly message: string;
    readonly reason?: string;
    readonly details?: { readonly causes: ReadonlyArray<StatusCause> };
  };
  readonly patch?: string;
  readonly patchType?: "JSONPatch";
  readonly warnings?: ReadonlyArray<string>;
}

export interface ReviewResponse {
  readonly apiVersion: "admission.k8s.io/v1";
  readonly kind: "AdmissionReview";
  readonly response: AdmissionResponse;
}

const wrap = (response: AdmissionResponse): ReviewResponse => ({
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  response,
});

const withWarnings = (warnings: ReadonlyArray<string> | undefined) =>
  warnings && warnings.length > 0 ? { warnings } : {};

export function allow(
  uid: string,
  patch?: ReadonlyArray<JsonPatchOp>,
  warnings?: ReadonlyArray<string>,
): ReviewResponse {
  return wrap({
    uid,
    allowed: true,
    ...(patch && patch.length > 0 ? { patch: base64(JSON.stringify(patch)), patchType: "JSONPatch" as const } : {}),
    ...withWarnings(warnings),
  });
}

/** A denial: 403 for rule violations (what kubectl shows as "admission webhook … denied the request"). */
export function deny(
  uid: string,
  message: string,
  causes: ReadonlyArray<StatusCause> = [],
  code = 403,
  warnings?: ReadonlyArray<string>,
): ReviewResponse {
  return wrap({
    uid,
    allowed: false,
    status: {
      code,
      message,
      reason: code === 403 ? "Forbidden" : code === 422 ? "Invalid" : "InternalError",
      ...(causes.length > 0 ? { details: { causes } } : {}),
    },
    ...withWarnings(warnings),
  });
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

// ---- JSON patch ---------------------------------------------------------------------------------------------------

export interface JsonPatchOp {
  readonly op: "add" | "remove" | "replace";
  readonly path: string;
  readonly value?: unknown;
}

const escapePointer = (key: string) => key.replace(/~/g, "~0").replace(/\//g, "~1");

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  if (Predicate.isObject(a) && Predicate.isObject(b) && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length &&
      ka.every((k) => k in b && sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => Predicate.isObject(v) && !Array.isArray(v);

/** The JSON patch turning `before` into `after`: objects are diffed key by key, anything else replaced whole. */
export function jsonDiff(before: unknown, after: unknown, path = ""): JsonPatchOp[] {
  if (sameJson(before, after)) return [];
  if (isPlainObject(before) && isPlainObject(after)) {
    const ops: JsonPatchOp[] = [];
    for (const key of Object.keys(before)) {
      if (!(key in after)) ops.push({ op: "remove", path: `${path}/${escapePointer(key)}` });
    }
    for (const [key, value] of Object.entries(after)) {
      const at = `${path}/${escapePointer(key)}`;
      if (!(key in before)) ops.push({ op: "add", path: at, value });
      else ops.push(...jsonDiff(before[key], value, at));
    }
    return ops;
  }
  return [{ op: "replace", path, value: after }];
}
