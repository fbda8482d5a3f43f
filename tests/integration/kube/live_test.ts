// Live-layer behaviour only a real apiserver can show: 410 from the watch cache, in-cluster service-account
// configuration with a rotating projected token, RBAC denials.
import * as k8s from "@kubernetes/client-node";
import { Effect, Stream } from "effect";
import { NetworkAttachmentDefinitionResource as NADs, PodResource } from "../../../core/api/k8s.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { connect, httpBackend, layerLiveKube } from "../../../adapters/kube/live.ts";
import { assertEquals, fail } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { ensureCrd, nadCrd } from "./crds.ts";

Deno.test("live kube: a watch from a resourceVersion the server no longer has relists (410 → Sync)", async () => {
  const cluster = await useCluster();
  const layer = layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } });
  const name = uniqueName("gone");
  try {
    await Effect.runPromise(
      Effect.gen(function* () {
        yield* ensureCrd(nadCrd);
        const kube = yield* Kube;
        yield* kube.create(NADs, { metadata: { name, namespace: "default" }, spec: { config: "{}" } });
        // The watch cache starts far above revision 1, so this version is "too old" for the server.
        const [first] = yield* kube.watch(NADs, {
          namespace: "default",
          fieldSelector: `metadata.name=${name}`,
          resourceVersion: "1",
        })
          .pipe(
            Stream.filter((e) => e._tag !== "Bookmark"),
            Stream.take(1),
            Stream.runCollect,
            Effect.timeout("20 seconds"),
          );
        if (first._tag !== "Sync") return fail(`expected a Sync after 410, got ${first._tag}`);
        assertEquals(first.reason, "expired");
        assertEquals(first.items.map((i) => i.metadata.name), [name]);
        yield* kube.delete(NADs, name, { namespace: "default" });
      }).pipe(Effect.provide(layer)),
    );
  } finally {
    await Effect.runPromise(
      Effect.gen(function* () {
        yield* (yield* Kube).delete(NADs, name, { namespace: "default" });
      }).pipe(
        Effect.ignore,
        Effect.provide(layer),
      ),
    ).catch(() => {});
    await cluster.release();
  }
});

Deno.test("live kube: in-cluster config re-reads the projected token on every request", async () => {
  const cluster = await useCluster();
  const core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
  const rbac = cluster.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
  const ns = "default";
  const sa = uniqueName("danm-sa");
  const dir = await Deno.makeTempDir({ prefix: "danm-sa-" });
  const tokenFile = `${dir}/token`;
  try {
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: sa } } });
    await rbac.createNamespacedRole({
      namespace: ns,
      body: { metadata: { name: sa }, rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: sa },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: sa },
        subjects: [{ kind: "ServiceAccount", name: sa, namespace: ns }],
      },
    });
    const issued = await core.createNamespacedServiceAccountToken({
      name: sa,
      namespace: ns,
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const token = issued.status?.token ?? fail("no token issued");
    await Deno.writeTextFile(tokenFile, "not-a-token");

    const layer = layerLiveKube({
      config: {
        _tag: "InCluster",
        host: "127.0.0.1",
        port: new URL(cluster.url).port,
        tokenFile,
        caFile: cluster.pki.ca.certFile,
      },
    });
    await Effect.runPromise(
      Effect.gen(function* () {
        const kube = yield* Kube;
        const list = kube.list(PodResource, { namespace: ns });
        const tag = Effect.map(Effect.flip(list), (e) => e._tag);
        assertEquals(yield* tag, "KubeUnauthorized");
        // kubelet rotates the projected token by swapping the file; the same client picks each version up.
        yield* Effect.promise(() => Deno.writeTextFile(tokenFile, `${token}\n`));
        yield* list;
        const forbidden = yield* Effect.flip(kube.list(PodResource, { namespace: "kube-system" }));
        assertEquals(forbidden._tag, "KubeForbidden");
        yield* Effect.promise(() => Deno.writeTextFile(tokenFile, "revoked"));
        assertEquals(yield* tag, "KubeUnauthorized");
        yield* Effect.promise(() => Deno.writeTextFile(tokenFile, token));
        yield* list;
      }).pipe(Effect.scoped, Effect.provide(layer)),
    );
  } finally {
    await rbac.deleteNamespacedRoleBinding({ name: sa, namespace: ns }).catch(() => {});
    await rbac.deleteNamespacedRole({ name: sa, namespace: ns }).catch(() => {});
    await core.deleteNamespacedServiceAccount({ name: sa, namespace: ns }).catch(() => {});
    await Deno.remove(dir, { recursive: true });
    await cluster.release();
  }
});

Deno.test("live kube: a write answering with metadata gets a PartialObjectMetadata, not the object", async () => {
  const cluster = await useCluster();
  const name = uniqueName("meta");
  const ref = { rt: NADs, namespace: "default" };
  try {
    const layer = layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } });
    await Effect.runPromise(
      ensureCrd(nadCrd).pipe(Effect.provide(layer)),
    );
    await Effect.runPromise(Effect.gen(function* () {
      const conn = yield* connect({ _tag: "Kubeconfig", path: cluster.kubeconfigPath });
      const backend = httpBackend(conn);
      const body = {
        apiVersion: "k8s.cni.cncf.io/v1",
        kind: "NetworkAttachmentDefinition",
        metadata: { name, namespace: "default" },
        spec: { config: "{}" },
      };
      const created = yield* backend.create(ref, body, { answer: "metadata" });
      assertEquals([created.kind, created.spec], ["PartialObjectMetadata", undefined]);
      const meta = created.metadata as { resourceVersion: string };
      const updated = yield* backend.replace({ ...ref, name }, {
        ...body,
        metadata: { ...body.metadata, resourceVersion: meta.resourceVersion },
        spec: { config: "{ }" },
      }, { answer: "metadata" });
      assertEquals([updated.kind, updated.spec], ["PartialObjectMetadata", undefined]);
      const whole = yield* backend.get({ ...ref, name });
      assertEquals([whole.kind, (whole.spec as { config: string }).config], ["NetworkAttachmentDefinition", "{ }"]);
      conn.close();
    }));
  } finally {
    await cluster.kubeConfig.makeApiClient(k8s.CustomObjectsApi).deleteNamespacedCustomObject({
      group: "k8s.cni.cncf.io",
      version: "v1",
      namespace: "default",
      plural: "network-attachment-definitions",
      name,
    }).catch(() => {});
    await cluster.release();
  }
});
