// The webhook's registrations (admissionregistration.k8s.io/v1), built in one place: k8s/webhook/webhooks.yaml is
// this output for the in-cluster Service (a unit test keeps them equal), and the integration tests register the
// same hooks by URL.
//
// Choices:
//   - sideEffects NoneOnDryRun: the only side effects (VNI claims, marking a claim released on DELETE) are
//     skipped on dry-run, so `kubectl apply --dry-run=server` works.
//   - failurePolicy Fail for the danm kinds: a network admitted without its checks (or without its VNI) is worse
//     than a failed apply.
//   - pods: Fail too, but only pods that ask for danm or NPWG networks are sent (matchConditions, CEL, GA since
//     1.30), hostNetwork pods never, and kube-system is excluded so that the webhook's own namespace and the
//     control plane never wait for it. A down webhook blocks only new pods that name secondary networks.
//   - MultiNetworkPolicies (both served versions): Fail too — a policy with a broken field would police differently
//     than its author thinks.
//   - reinvocationPolicy Never: our mutation does not depend on other mutators' output; the validating webhook
//     sees the final object anyway.
import { InterfacesAnnotation, LegacyInterfacesAnnotation, NetworksAnnotation } from "../api/annotations.ts";
import { MultiNetworkPolicyResource } from "../api/netpol.ts";

export const WebhookConfigurationName = "danm-webhook";

export type ClientConfig =
  | { readonly url: string }
  | { readonly service: { readonly namespace: string; readonly name: string; readonly port?: number } };

export interface LabelSelector {
  readonly matchLabels?: Readonly<Record<string, string>>;
  readonly matchExpressions?: ReadonlyArray<
    { readonly key: string; readonly operator: string; readonly values?: ReadonlyArray<string> }
  >;
}

export interface RegistrationOptions {
  /** Name of both configurations. */
  readonly name?: string;
  /** Where the apiserver calls: a base URL (the path is appended) or the Service. */
  readonly client: ClientConfig;
  /** base64 PEM of the CA that signed the serving certificate; the bootstrap patches it in when omitted. */
  readonly caBundle?: string;
  /** Only objects with these labels are sent (tests confine the hooks to their own objects). */
  readonly objectSelector?: LabelSelector;
  readonly timeoutSeconds?: number;
  /** Namespaces whose pods are never sent. Default: kube-system. */
  readonly excludedPodNamespaces?: ReadonlyArray<string>;
}

const networkResources = ["danmnets", "tenantnetworks", "clusternetworks"];

function clientConfig(o: RegistrationOptions, path: string): Record<string, unknown> {
  const base = "url" in o.client
    ? { url: `${o.client.url.replace(/\/$/, "")}${path}` }
    : { service: { ...o.client.service, port: o.client.service.port ?? 443, path } };
  return { ...base, ...(o.caBundle ? { caBundle: o.caBundle } : {}) };
}

function common(o: RegistrationOptions, name: string, path: string): Record<string, unknown> {
  return {
    name,
    clientConfig: clientConfig(o, path),
    admissionReviewVersions: ["v1"],
    sideEffects: "NoneOnDryRun",
    failurePolicy: "Fail",
    matchPolicy: "Equivalent",
    timeoutSeconds: o.timeoutSeconds ?? 10,
    ...(o.objectSelector ? { objectSelector: o.objectSelector } : {}),
  };
}

const danmRule = (operations: string[], resources: string[]) => ({
  apiGroups: ["danm.io"],
  apiVersions: ["v1"],
  operations,
  resources,
  scope: "*",
});

/** CEL: the pod names danm or NPWG networks and does not use the host's network. */
export const podMatchConditions = [
  {
    name: "selects-secondary-networks",
    expression: `has(object.metadata.annotations) && (${
      [InterfacesAnnotation, LegacyInterfacesAnnotation, NetworksAnnotation]
        .map((a) => `'${a}' in object.metadata.annotations`).join(" || ")
    })`,
  },
  { name: "not-host-network", expression: "!has(object.spec.hostNetwork) || !object.spec.hostNetwork" },
];

export function webhookConfigurations(o: RegistrationOptions): {
  readonly mutating: Record<string, unknown>;
  readonly validating: Record<string, unknown>;
} {
  const name = o.name ?? WebhookConfigurationName;
  const metadata = { name, labels: { "app.kubernetes.io/name": "danm-webhook" } };
  const excluded = o.excludedPodNamespaces ?? ["kube-system"];
  return {
    mutating: {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "MutatingWebhookConfiguration",
      metadata,
      webhooks: [
        {
          ...common(o, "networks.mutate.danm.io", "/mutate"),
          rules: [danmRule(["CREATE", "UPDATE"], networkResources)],
          reinvocationPolicy: "Never",
        },
      ],
    },
    validating: {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingWebhookConfiguration",
      metadata,
      webhooks: [
        {
          ...common(o, "networks.validate.danm.io", "/validate"),
          rules: [danmRule(["CREATE", "UPDATE", "DELETE"], networkResources)],
        },
        {
          ...common(o, "tenantconfigs.validate.danm.io", "/validate"),
          rules: [danmRule(["CREATE", "UPDATE"], ["tenantconfigs"])],
        },
        {
          ...common(o, "reservedips.validate.danm.io", "/validate"),
          rules: [danmRule(["CREATE", "UPDATE", "DELETE"], ["reservedips"])],
        },
        {
          ...common(o, "multinetworkpolicies.validate.danm.io", "/validate"),
          rules: [{
            apiGroups: [MultiNetworkPolicyResource.group],
            apiVersions: ["v1beta1", "v1beta2"],
            operations: ["CREATE", "UPDATE"],
            resources: [MultiNetworkPolicyResource.plural],
            scope: "Namespaced",
          }],
        },
        {
          ...common(o, "pods.validate.danm.io", "/validate"),
          rules: [{
            apiGroups: [""],
            apiVersions: ["v1"],
            operations: ["CREATE"],
            resources: ["pods"],
            scope: "Namespaced",
          }],
          ...(excluded.length > 0
            ? {
              namespaceSelector: {
                matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: [...excluded] }],
              },
            }
            : {}),
          matchConditions: podMatchConditions,
        },
      ],
    },
  };
}
