// Smoke test of the apiserver tier: @kubernetes/client-node under Deno, over TLS with client certificates.
import * as k8s from "@kubernetes/client-node";
import { assert, assertEquals } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";

Deno.test("client-node creates a CRD, an object of it, and watches an update arrive", async () => {
  const cluster = await useCluster();
  const kc = cluster.kubeConfig;
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const objects = kc.makeApiClient(k8s.CustomObjectsApi);
  const group = `${uniqueName("smoke")}.danm.test`;
  const crdName = `widgets.${group}`;
  try {
    await ext.createCustomResourceDefinition({
      body: {
        metadata: { name: crdName },
        spec: {
          group,
          scope: "Namespaced",
          names: { plural: "widgets", singular: "widget", kind: "Widget" },
          versions: [{
            name: "v1",
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: "object",
                properties: { spec: { type: "object", properties: { size: { type: "integer" } } } },
              },
            },
          }],
        },
      },
    });
    const deadline = Date.now() + 30_000;
    while (true) {
      const crd = await ext.readCustomResourceDefinition({ name: crdName });
      if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
      assert(Date.now() < deadline, "CRD never became Established");
      await new Promise((r) => setTimeout(r, 100));
    }
    const ref = { group, version: "v1", namespace: "default", plural: "widgets" };
    await objects.createNamespacedCustomObject({
      ...ref,
      body: { apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w1" }, spec: { size: 1 } },
    });
    const got = await objects.getNamespacedCustomObject({ ...ref, name: "w1" }) as {
      spec: { size: number };
      metadata: { resourceVersion: string };
    };
    assertEquals(got.spec.size, 1);

    const seen = Promise.withResolvers<number>();
    const watch = new k8s.Watch(kc);
    const abort = await watch.watch(
      `/apis/${group}/v1/namespaces/default/widgets`,
      { resourceVersion: got.metadata.resourceVersion },
      (type: string, obj: { spec?: { size?: number } }) => {
        if (type === "MODIFIED") seen.resolve(obj.spec?.size ?? -1);
      },
      (err: unknown) => err && seen.reject(err),
    );
    try {
      await objects.patchNamespacedCustomObject(
        { ...ref, name: "w1", body: { spec: { size: 2 } } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
      const timeout = setTimeout(() => seen.reject(new Error("no MODIFIED event within 10 s")), 10_000);
      assertEquals(await seen.promise, 2);
      clearTimeout(timeout);
    } finally {
      abort.abort();
    }
  } finally {
    await ext.deleteCustomResourceDefinition({ name: crdName }).catch(() => {});
    await cluster.release();
  }
});
