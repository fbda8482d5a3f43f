// The kustomize base k8s/ (and the optional k8s/nad-crd) on the real apiserver: every object, as
// `kubectl apply -k` would send it, passes server-side apply as a dry run with strict field validation. The
// danm.io CRDs are really installed first (a dry run of anything using a CRD needs it). Nothing is persisted:
// the base's webhook configurations would otherwise send every other test's danm objects to a webhook that
// does not run here. (The static rules — no token Secrets, no beta APIs, explicit RBAC … — are in
// tests/unit/k8s/base_test.ts.)
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { assert, assertEquals, fail } from "../../harness/assert.ts";
import { useCluster } from "../../harness/cluster.ts";
import { repoRoot } from "../../harness/proc.ts";
import { clusterScopedKinds, type RenderedObject, renderKustomization } from "../../unit/k8s/kustomize.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { type Api, apiClient, type ApiResource, discover, messageOf, objectPath } from "./support.ts";

const FieldManager = "danm-k8s-manifests-test";

async function resourcesOf(api: Api, rendered: ReadonlyArray<RenderedObject>) {
  const byVersion = new Map<string, Map<string, ApiResource>>();
  for (const v of new Set(rendered.map((r) => r.object.apiVersion))) byVersion.set(v, await discover(api, v));
  return (o: RenderedObject["object"]): ApiResource =>
    byVersion.get(o.apiVersion)?.get(o.kind) ?? fail(`${o.apiVersion} ${o.kind} is not served by the apiserver`);
}

/**
 * Server-side apply, dry run, strict: every problem of every object, not just the first. `unrendered`: kinds that
 * did not come through the renderer (its scope table does not list them).
 */
async function dryRunApply(
  api: Api,
  rendered: ReadonlyArray<RenderedObject>,
  unrendered: ReadonlySet<string> = new Set(),
): Promise<string[]> {
  const resource = await resourcesOf(api, rendered);
  const problems: string[] = [];
  for (const { object: o, source } of rendered) {
    const res = resource(o);
    // The renderer's scope table decides where `namespace:` applies; it must agree with the server.
    if (!unrendered.has(o.kind)) {
      assertEquals(!clusterScopedKinds.has(o.kind), res.namespaced, `${o.kind}: the renderer's scope`);
    }
    const r = await api.request(
      "PATCH",
      `${objectPath(o, res)}?dryRun=All&fieldValidation=Strict&fieldManager=${FieldManager}&force=true`,
      o,
      "application/apply-patch+yaml",
    );
    if (r.status !== 200 && r.status !== 201) {
      problems.push(`${source}: ${o.kind} ${o.metadata.name}: ${r.status} ${messageOf(r)}`);
      continue;
    }
    const back = r.body as { kind?: string; metadata?: { name?: string; namespace?: string } };
    assertEquals([back.kind, back.metadata?.name, back.metadata?.namespace], [
      o.kind,
      o.metadata.name,
      o.metadata.namespace,
    ]);
  }
  return problems;
}

Deno.test("manifests: every object of the k8s/ base passes server-side apply (dry run, strict validation)", async () => {
  const cluster = await useCluster();
  const api = apiClient(cluster.kubeConfig);
  try {
    await installDanmCrds(cluster.kubeConfig);
    const base = renderKustomization(`${repoRoot}/k8s`);
    assert(base.length > 20, `the base renders (${base.length} objects)`);
    assertEquals(await dryRunApply(api, base), []);
    // Dry runs persist nothing: the webhook configurations are still absent.
    for (const kind of ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"]) {
      const r = await api.request("GET", `/apis/admissionregistration.k8s.io/v1/${kind}/danm-webhook`);
      assertEquals(r.status, 404, `${kind}/danm-webhook was not created`);
    }
  } finally {
    api.close();
    await cluster.release();
  }
});

Deno.test("manifests: k8s/nad-crd passes server-side apply (dry run, strict validation)", async () => {
  const cluster = await useCluster();
  const api = apiClient(cluster.kubeConfig);
  try {
    assertEquals(await dryRunApply(api, renderKustomization(`${repoRoot}/k8s/nad-crd`)), []);
  } finally {
    api.close();
    await cluster.release();
  }
});

Deno.test("manifests: the bootstrap network k8s/README.md tells to create first passes too", async () => {
  const readme = await Deno.readTextFile(`${repoRoot}/k8s/README.md`);
  const block = /```yaml\n(# default-network\.yaml[\s\S]*?)```/.exec(readme)?.[1] ?? fail("no default-network.yaml");
  const object = yaml.load(block) as RenderedObject["object"];
  assertEquals([object.kind, object.metadata.name, object.metadata.namespace], ["DanmNet", "default", "kube-system"]);
  const cluster = await useCluster();
  const api = apiClient(cluster.kubeConfig);
  try {
    await installDanmCrds(cluster.kubeConfig);
    assertEquals(await dryRunApply(api, [{ object, source: "k8s/README.md" }], new Set(["DanmNet"])), []);
  } finally {
    api.close();
    await cluster.release();
  }
});

Deno.test("manifests: strict dry runs do catch a broken manifest", async () => {
  const cluster = await useCluster();
  const api = apiClient(cluster.kubeConfig);
  try {
    const base = renderKustomization(`${repoRoot}/k8s`);
    const ds = base.find((r) => r.object.kind === "DaemonSet") ?? fail("no DaemonSet");
    const spec = ds.object.spec as { template: { metadata: unknown; spec: Record<string, unknown> } };
    const broken = [
      // An unknown field (a typo) …
      {
        ...ds,
        object: {
          ...ds.object,
          spec: { ...spec, template: { ...spec.template, spec: { ...spec.template.spec, hostNetwrok: true } } },
        },
      },
      // … and an invalid value.
      { ...ds, object: { ...ds.object, metadata: { ...ds.object.metadata, name: "Not_A_Name" } } },
    ];
    const problems = await dryRunApply(api, broken as RenderedObject[]);
    assertEquals(problems.length, 2, problems.join("\n"));
    assert(problems[0].includes("hostNetwrok"), problems[0]);
  } finally {
    api.close();
    await cluster.release();
  }
});
