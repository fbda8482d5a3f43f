// Installs the CRDs of danm's base into the test apiserver: the generated danm.io CRDs and the MultiNetworkPolicy CRD
// (k8s/multinetworkpolicy-crd). Idempotent (create, or replace what another test installed) because every test file
// of the tier shares one apiserver.
import type * as k8s from "@kubernetes/client-node";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Effect } from "effect";
import { type CustomResourceDefinition, customResourceDefinition } from "../../../core/api/crdgen.ts";
import { danmCrdDescriptions } from "../../../core/api/danm_crds.ts";
import { repoRoot } from "../../harness/proc.ts";
import { pick, type Rest, restClient } from "./rest.ts";

export const danmCrds: ReadonlyArray<CustomResourceDefinition> = Effect.runSync(
  Effect.forEach(danmCrdDescriptions, customResourceDefinition),
);

/** The MultiNetworkPolicy CRD as k8s/ ships it (the NPWG's kind, not generated). */
export const multiNetworkPolicyCrdFile = "k8s/multinetworkpolicy-crd/k8s.cni.cncf.io_multi-networkpolicies.yaml";
export const multiNetworkPolicyCrd = yaml.load(
  Deno.readTextFileSync(`${repoRoot}/${multiNetworkPolicyCrdFile}`),
) as CustomResourceDefinition;

/** Every CRD `kubectl apply -k k8s` installs. */
const baseCrds = [...danmCrds, multiNetworkPolicyCrd];

const crdPath = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

async function createOrReplace(rest: Rest, crd: CustomResourceDefinition): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const created = await rest.call("POST", crdPath, crd);
    if (created.status === 201) return;
    if (created.status !== 409) throw new Error(`creating ${crd.metadata.name}: ${JSON.stringify(created.body)}`);
    const existing = await rest.call("GET", `${crdPath}/${crd.metadata.name}`);
    if (existing.status === 404) continue; // deleted meanwhile: create again
    const resourceVersion = pick(existing.body, "metadata", "resourceVersion");
    const replaced = await rest.call("PUT", `${crdPath}/${crd.metadata.name}`, {
      ...crd,
      metadata: { ...crd.metadata, resourceVersion },
    });
    if (replaced.status === 200) return;
    if (replaced.status !== 409) throw new Error(`replacing ${crd.metadata.name}: ${JSON.stringify(replaced.body)}`);
  }
  throw new Error(`${crd.metadata.name}: kept conflicting with concurrent writers`);
}

async function established(rest: Rest, name: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const r = await rest.call("GET", `${crdPath}/${name}`);
    const conditions = pick(r.body, "status", "conditions");
    if (Array.isArray(conditions) && conditions.some((c) => c.type === "Established" && c.status === "True")) return;
    if (Date.now() > deadline) throw new Error(`${name} not Established after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Creates or replaces every CRD of the base (danm.io + MultiNetworkPolicy) and waits until all are Established. */
export async function installDanmCrds(kc: k8s.KubeConfig, timeoutMs = 30_000): Promise<void> {
  const rest = restClient(kc);
  try {
    for (const crd of baseCrds) await createOrReplace(rest, crd);
    for (const crd of baseCrds) await established(rest, crd.metadata.name, timeoutMs);
  } finally {
    rest.close();
  }
}
