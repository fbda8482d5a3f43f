// How the webhook reports a refusal: every problem names the field and the rule, and the whole message names the
// object, e.g. `DanmNet default/foo: spec.Options.vlan: must not change while pods are attached (pod default/p1)`.
import { Schema } from "effect";
import type { StatusCause } from "./review.ts";

export interface Problem {
  /** JSON path of the offending field, e.g. `spec.Options.vlan`; "" for the object as a whole. */
  readonly field: string;
  readonly message: string;
  /** Short identifier of the rule (returned as the cause's reason). */
  readonly rule: string;
}

export const problem = (field: string, rule: string, message: string): Problem => ({ field, rule, message });

export interface ObjectRef {
  readonly kind: string;
  readonly namespace?: string | undefined;
  readonly name: string;
}

export const describeObject = (o: ObjectRef): string => `${o.kind} ${o.namespace ? `${o.namespace}/` : ""}${o.name}`;

export function renderDenial(object: ObjectRef, problems: ReadonlyArray<Problem>): string {
  return `${describeObject(object)}: ${
    problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join("; ")
  }`;
}

export const causesOf = (problems: ReadonlyArray<Problem>): StatusCause[] =>
  problems.map((p) => ({ ...(p.field ? { field: p.field } : {}), message: p.message, reason: p.rule }));

/** The request breaks at least one rule. */
export class AdmissionDenied extends Schema.TaggedError<AdmissionDenied>()("AdmissionDenied", {
  kind: Schema.String,
  namespace: Schema.optionalKey(Schema.String),
  objectName: Schema.String,
  problems: Schema.Array(Schema.Struct({ field: Schema.String, message: Schema.String, rule: Schema.String })),
}) {
  override get message(): string {
    return renderDenial({ kind: this.kind, namespace: this.namespace, name: this.objectName }, this.problems);
  }
}

/** The webhook could not decide (a lookup or a claim failed); the request is refused so that nothing half-happens. */
export class AdmissionFailure extends Schema.TaggedError<AdmissionFailure>()("AdmissionFailure", {
  kind: Schema.String,
  namespace: Schema.optionalKey(Schema.String),
  objectName: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `${describeObject({ kind: this.kind, namespace: this.namespace, name: this.objectName })}: ` +
      `cannot be admitted right now: ${this.detail}`;
  }
}

export const denied = (object: ObjectRef, problems: ReadonlyArray<Problem>): AdmissionDenied =>
  new AdmissionDenied({
    kind: object.kind,
    objectName: object.name,
    problems,
    ...(object.namespace ? { namespace: object.namespace } : {}),
  });

export const failure = (object: ObjectRef, detail: string): AdmissionFailure =>
  new AdmissionFailure({
    kind: object.kind,
    objectName: object.name,
    detail,
    ...(object.namespace ? { namespace: object.namespace } : {}),
  });
