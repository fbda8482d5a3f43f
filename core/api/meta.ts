// Kubernetes object metadata shared by every kind danm reads or writes.
//
// Decoding is lenient about fields danm does not model (they are ignored, not rejected): these
// schemas read objects owned by others too. Writers of foreign kinds use patches so that fields
// outside the model are never dropped.
import { Schema } from "effect";

export const StringMap = Schema.Record(Schema.String, Schema.String);

export const OwnerReference = Schema.Struct({
  apiVersion: Schema.String,
  kind: Schema.String,
  name: Schema.String,
  uid: Schema.String,
  controller: Schema.optionalKey(Schema.Boolean),
  blockOwnerDeletion: Schema.optionalKey(Schema.Boolean),
});
export type OwnerReference = typeof OwnerReference.Type;

export const ObjectMeta = Schema.Struct({
  name: Schema.optionalKey(Schema.String),
  generateName: Schema.optionalKey(Schema.String),
  namespace: Schema.optionalKey(Schema.String),
  uid: Schema.optionalKey(Schema.String),
  resourceVersion: Schema.optionalKey(Schema.String),
  generation: Schema.optionalKey(Schema.Number),
  creationTimestamp: Schema.optionalKey(Schema.String),
  deletionTimestamp: Schema.optionalKey(Schema.String),
  deletionGracePeriodSeconds: Schema.optionalKey(Schema.Number),
  labels: Schema.optionalKey(StringMap),
  annotations: Schema.optionalKey(StringMap),
  ownerReferences: Schema.optionalKey(Schema.Array(OwnerReference)),
  finalizers: Schema.optionalKey(Schema.Array(Schema.String)),
});
export type ObjectMeta = typeof ObjectMeta.Type;
