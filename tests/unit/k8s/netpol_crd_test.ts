// The MultiNetworkPolicy CRD k8s/ ships (k8s/multinetworkpolicy-crd): the kind core/api/netpol.ts reads, both NPWG
// versions served with one schema, v1beta1 stored, part of the base. (The real apiserver checks it in
// tests/integration/api/netpol_crd_test.ts.)
import { MultiNetworkPolicyResource } from "../../../core/api/netpol.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";
import { renderKustomization } from "./kustomize.ts";

interface CrdVersion {
  readonly name: string;
  readonly served: boolean;
  readonly storage: boolean;
  readonly schema: unknown;
}
interface Crd {
  readonly metadata: { readonly name: string };
  readonly spec: {
    readonly group: string;
    readonly scope: string;
    readonly names: { readonly kind: string; readonly plural: string };
    readonly versions: ReadonlyArray<CrdVersion>;
  };
}

const [rendered, ...others] = renderKustomization(`${repoRoot}/k8s/multinetworkpolicy-crd`);
const crd = (rendered?.object ?? fail("k8s/multinetworkpolicy-crd renders nothing")) as unknown as Crd;

Deno.test("netpol CRD: the kind danm reads, namespaced, under the NPWG's group and plural", () => {
  assertEquals(others.length, 0);
  const r = MultiNetworkPolicyResource;
  assertEquals(crd.metadata.name, `${r.plural}.${r.group}`);
  assertEquals([crd.spec.group, crd.spec.names.kind, crd.spec.names.plural], [r.group, r.kind, r.plural]);
  assertEquals(crd.spec.scope, r.namespaced ? "Namespaced" : "Cluster");
});

Deno.test("netpol CRD: v1beta1 and v1beta2 served with one schema, v1beta1 (what danm reads) stored", () => {
  const versions = crd.spec.versions;
  assertEquals(versions.map((v) => [v.name, v.served, v.storage]), [["v1beta1", true, true], ["v1beta2", true, false]]);
  assertEquals(versions[1].schema, versions[0].schema, "identical schemas: no conversion needed");
  assertEquals(MultiNetworkPolicyResource.version, versions.find((v) => v.storage)?.name);
});

Deno.test("netpol CRD: part of the base (kubectl apply -k k8s)", () => {
  const base = renderKustomization(`${repoRoot}/k8s`).map((r) => r.object);
  assert(base.some((o) => o.kind === "CustomResourceDefinition" && o.metadata.name === crd.metadata.name));
});
