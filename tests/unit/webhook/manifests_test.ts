// k8s/webhook: the registrations equal what core/webhook/manifests.ts builds, and the names the Deployment passes
// to the webhook are the ones RBAC grants and the Service exposes.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { webhookConfigurations } from "../../../core/webhook/manifests.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";

type Obj = Record<string, unknown> & { kind: string; metadata: { name: string; namespace?: string } };

const load = (file: string): Obj[] =>
  yaml.loadAll(Deno.readTextFileSync(`${repoRoot}/k8s/webhook/${file}`)).filter((d) => d !== null) as Obj[];

const byKind = (docs: Obj[], kind: string) => docs.filter((d) => d.kind === kind);

Deno.test("manifests: webhooks.yaml is the builder's output for the in-cluster Service", () => {
  const docs = load("webhooks.yaml");
  const built = webhookConfigurations({ client: { service: { namespace: "kube-system", name: "danm-webhook" } } });
  assertEquals(byKind(docs, "MutatingWebhookConfiguration"), [built.mutating]);
  assertEquals(byKind(docs, "ValidatingWebhookConfiguration"), [built.validating]);
  for (const d of docs) {
    for (const w of (d as unknown as { webhooks: Array<Record<string, unknown>> }).webhooks) {
      assertEquals([w.sideEffects, w.failurePolicy, w.admissionReviewVersions], ["NoneOnDryRun", "Fail", ["v1"]]);
    }
  }
});

Deno.test("manifests: the Deployment's names match RBAC and the Service", () => {
  const [deployment] = byKind(load("deployment.yaml"), "Deployment") as unknown as Array<{
    metadata: { namespace: string };
    spec: {
      template: {
        spec: {
          serviceAccountName: string;
          containers: Array<
            { args: string[]; ports: Array<{ name: string; containerPort: number }>; env: Array<{ name: string }> }
          >;
        };
      };
    };
  }>;
  const pod = deployment.spec.template.spec;
  const flag = (name: string) => pod.containers[0].args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  const rbac = load("rbac.yaml");
  const role = byKind(rbac, "Role")[0] as unknown as {
    rules: Array<{ resources: string[]; resourceNames?: string[] }>;
  };
  const clusterRole = byKind(rbac, "ClusterRole")[0] as unknown as typeof role;
  const sa = byKind(rbac, "ServiceAccount")[0].metadata;
  assertEquals([sa.name, sa.namespace], [pod.serviceAccountName, deployment.metadata.namespace]);
  assert(
    role.rules.some((r) => r.resources.includes("secrets") && r.resourceNames?.includes(flag("secret-name") ?? "")),
  );
  assert(
    clusterRole.rules.some((r) =>
      r.resources.includes("validatingwebhookconfigurations") &&
      r.resourceNames?.includes(flag("webhook-config-name") ?? "")
    ),
  );
  const [service] = byKind(load("service.yaml"), "Service") as unknown as Array<{
    metadata: { name: string; namespace: string };
    spec: { ports: Array<{ port: number; targetPort: string }> };
  }>;
  assertEquals([service.metadata.name, service.metadata.namespace], [
    flag("service-name"),
    deployment.metadata.namespace,
  ]);
  assertEquals(
    pod.containers[0].ports.find((p) => p.name === service.spec.ports[0].targetPort)?.containerPort,
    Number(flag("port")),
  );
  assert(pod.containers[0].env.some((e) => e.name === "POD_NAMESPACE"), "the namespace comes from the downward API");
  assert(pod.containers[0].args.includes("--bootstrap-certs"));
});
