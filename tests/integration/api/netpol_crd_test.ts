// The MultiNetworkPolicy CRD (k8s/multinetworkpolicy-crd) on a real apiserver: the NPWG's examples apply unchanged
// in either version (strict field validation), read back the same through both versions and decode with danm's
// Schema; malformed objects are refused by the schema itself.
import { Schema } from "effect";
import { MultiNetworkPolicy } from "../../../core/api/netpol.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { npwgExamples } from "../../fixtures/netpol/examples.ts";
import type { JsonObject } from "../../unit/api/compat.ts";
import { installDanmCrds } from "./danm_crds.ts";
import { pick, type Rest, restClient } from "./rest.ts";

const namespace = "default";
const collection = (version: string) =>
  `/apis/k8s.cni.cncf.io/${version}/namespaces/${namespace}/multi-networkpolicies`;
const versionOf = (doc: JsonObject) => String(doc.apiVersion).split("/")[1];

async function withRest(fn: (rest: Rest, created: string[]) => Promise<void>): Promise<void> {
  const cluster = await useCluster();
  const rest = restClient(cluster.kubeConfig);
  const created: string[] = [];
  try {
    await installDanmCrds(cluster.kubeConfig);
    const deadline = Date.now() + 10_000;
    while ((await rest.call("GET", collection("v1beta2"))).status !== 200) {
      if (Date.now() > deadline) fail("multi-networkpolicies not served");
      await new Promise((r) => setTimeout(r, 100));
    }
    await fn(rest, created);
  } finally {
    for (const name of created) await rest.call("DELETE", `${collection("v1beta1")}/${name}`);
    rest.close();
    await cluster.release();
  }
}

const renamed = (doc: JsonObject): JsonObject => {
  const meta = doc.metadata as JsonObject;
  return { ...doc, metadata: { ...meta, name: uniqueName(String(meta.name)), namespace } };
};

Deno.test("netpol CRD: the NPWG examples apply unchanged in either version and read back the same through both", async () => {
  await withRest(async (rest, created) => {
    assert(npwgExamples.length >= 5);
    for (const example of npwgExamples) {
      const body = renamed(example);
      const name = String(pick(body, "metadata", "name"));
      const r = await rest.call("POST", `${collection(versionOf(body))}?fieldValidation=Strict`, body);
      assertEquals(r.status, 201, `${name}: ${JSON.stringify(r.body)}`);
      created.push(name);
      for (const version of ["v1beta1", "v1beta2"]) {
        const back = await rest.call("GET", `${collection(version)}/${name}`);
        assertEquals(back.status, 200);
        assertEquals(pick(back.body, "apiVersion"), `k8s.cni.cncf.io/${version}`);
        assertEquals(pick(back.body, "spec"), body.spec, `${name} through ${version}`);
        assertEquals(pick(back.body, "metadata", "annotations"), pick(body, "metadata", "annotations"));
        // What the node agent, the webhook and the sim read decodes.
        Schema.decodeUnknownSync(MultiNetworkPolicy)(back.body);
      }
    }
  });
});

Deno.test("netpol CRD: the schema refuses what is not a MultiNetworkPolicy, naming the field", async () => {
  await withRest(async (rest) => {
    const base = renamed(npwgExamples[0]);
    const { podSelector: _selector, ...unselected } = base.spec as JsonObject;
    const spec = base.spec as JsonObject;
    const cases: ReadonlyArray<[JsonObject, RegExp]> = [
      [{ ...base, spec: unselected }, /spec\.podSelector: Required value/],
      [
        { ...base, spec: { ...spec, policyTypes: ["ingress"] } },
        /spec\.policyTypes\[0\]: Unsupported value: "ingress"/,
      ],
      [
        { ...base, spec: { ...spec, ingress: [{ ports: [{ protocol: "tcp", port: 80 }] }] } },
        /spec\.ingress\[0\]\.ports\[0\]\.protocol: Unsupported value: "tcp"/,
      ],
      [
        { ...base, spec: { ...spec, egress: [{ to: [{ ipBlock: {} }] }] } },
        /spec\.egress\[0\]\.to\[0\]\.ipBlock\.cidr: Required/,
      ],
      [{ ...base, spec: { ...spec, ingres: [] } }, /unknown field "spec\.ingres"/],
    ];
    for (const [body, message] of cases) {
      const r = await rest.call(
        "POST",
        `${collection("v1beta1")}?fieldValidation=Strict`,
        body,
      );
      assert(r.status === 422 || r.status === 400, `refused: ${r.status} ${JSON.stringify(r.body)}`);
      assertMatch(String(pick(r.body, "message")), message);
    }
  });
});
