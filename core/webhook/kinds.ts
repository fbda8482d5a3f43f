// The Kubernetes kinds only the webhook touches (its serving Secret and its own webhook configurations), modelled
// as far as the certificate bootstrap needs them. Decoding ignores everything else; writes are patches.
import { Schema } from "effect";
import { ObjectMeta } from "../api/meta.ts";
import type { ResourceType } from "../ports/kube.ts";

const opt = Schema.optionalKey;

export const Secret = Schema.Struct({
  apiVersion: opt(Schema.String),
  kind: opt(Schema.String),
  metadata: ObjectMeta,
  type: opt(Schema.String),
  /** base64 values */
  data: opt(Schema.Record(Schema.String, Schema.String)),
});
export type Secret = typeof Secret.Type;

export const WebhookConfiguration = Schema.Struct({
  apiVersion: opt(Schema.String),
  kind: opt(Schema.String),
  metadata: ObjectMeta,
  webhooks: opt(Schema.Array(Schema.Struct({
    name: Schema.String,
    clientConfig: Schema.Struct({ caBundle: opt(Schema.String), url: opt(Schema.String) }),
  }))),
});
export type WebhookConfiguration = typeof WebhookConfiguration.Type;

export const SecretResource: ResourceType<Secret, typeof Secret.Encoded> = {
  group: "",
  version: "v1",
  kind: "Secret",
  plural: "secrets",
  namespaced: true,
  schema: Secret,
};

export const ValidatingWebhookConfigurationResource: ResourceType<
  WebhookConfiguration,
  typeof WebhookConfiguration.Encoded
> = {
  group: "admissionregistration.k8s.io",
  version: "v1",
  kind: "ValidatingWebhookConfiguration",
  plural: "validatingwebhookconfigurations",
  namespaced: false,
  schema: WebhookConfiguration,
};

export const MutatingWebhookConfigurationResource: ResourceType<
  WebhookConfiguration,
  typeof WebhookConfiguration.Encoded
> = {
  ...ValidatingWebhookConfigurationResource,
  kind: "MutatingWebhookConfiguration",
  plural: "mutatingwebhookconfigurations",
};
