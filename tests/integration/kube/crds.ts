// Installs CRDs (crds/*.yaml, k8s/nad-crd) on the test apiserver. They are cluster fixtures shared by every test file of a
// run (identical manifests), so tests install them idempotently and leave them in place; the apiserver is thrown
// away with the run.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Effect, Schema } from "effect";
import { ObjectMeta } from "../../../core/api/meta.ts";
import { Kube, type ResourceType } from "../../../core/ports/kube.ts";
import { repoRoot } from "../../harness/proc.ts";

const opt = Schema.optionalKey;

const Crd = Schema.Struct({
  metadata: ObjectMeta,
  spec: Schema.Unknown,
  status: opt(Schema.Struct({
    conditions: opt(Schema.NullOr(Schema.Array(Schema.Struct({ type: Schema.String, status: Schema.String })))),
  })),
});

export const CrdResource: ResourceType<typeof Crd.Type, typeof Crd.Encoded> = {
  group: "apiextensions.k8s.io",
  version: "v1",
  kind: "CustomResourceDefinition",
  plural: "customresourcedefinitions",
  namespaced: false,
  schema: Crd,
};

/** The NetworkAttachmentDefinition CRD (the NPWG's, not generated), as `kubectl apply -k k8s/nad-crd` installs it. */
export const nadCrd = "k8s/nad-crd/k8s.cni.cncf.io_network-attachment-definitions.yaml";

/** Creates the CRD in `file` (a path from the repository root) unless present, then waits until it is Established. */
export const ensureCrd = (file: string) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const text = yield* Effect.promise(() => Deno.readTextFile(`${repoRoot}/${file}`));
    const crd = Schema.decodeUnknownSync(Crd)(yaml.load(text));
    const name = crd.metadata.name ?? "";
    yield* kube.create(CrdResource, crd).pipe(Effect.catchTag("KubeAlreadyExists", () => Effect.void));
    const deadline = Date.now() + 30_000;
    while (true) {
      const got = yield* kube.get(CrdResource, name);
      if (got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) return;
      if (Date.now() > deadline) return yield* Effect.die(new Error(`CRD ${name} not Established after 30 s`));
      yield* Effect.sleep("100 millis");
    }
  });
