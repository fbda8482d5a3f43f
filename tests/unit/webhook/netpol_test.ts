// MultiNetworkPolicy admission (core/webhook/policies.ts) on the in-memory apiserver: refusals name the field,
// missing networks and an absent policy-for are warnings, Schema-level mistakes are refused too, an UPDATE that
// leaves the spec and policy-for alone is not re-judged.
import { Effect } from "effect";
import { DanmNetResource, decodeDanmObject } from "../../../core/api/danm.ts";
import { NetworkAttachmentDefinitionResource } from "../../../core/api/k8s.ts";
import { PolicyForAnnotation } from "../../../core/api/netpol.ts";
import { npwgExamples } from "../../fixtures/netpol/examples.ts";
import { assertEquals } from "../../harness/assert.ts";
import { type Env, expectAllowed, expectDenied, type Json, review, withEnv } from "./harness.ts";

const group = "k8s.cni.cncf.io";
const field = `metadata.annotations[${PolicyForAnnotation}]`;

const policy = (spec: Json, policyFor: string | null = "net1"): Json => ({
  apiVersion: "k8s.cni.cncf.io/v1beta1",
  kind: "MultiNetworkPolicy",
  metadata: {
    name: "p",
    namespace: "default",
    ...(policyFor === null ? {} : { annotations: { [PolicyForAnnotation]: policyFor } }),
  },
  spec,
});

const setup = (env: Env) =>
  Effect.gen(function* () {
    const dn = yield* Effect.orDie(decodeDanmObject("DanmNet", {
      metadata: { name: "net1", namespace: "default" },
      spec: { NetworkID: "net1", Options: { cidr: "10.10.0.0/24" } },
    }));
    yield* Effect.orDie(env.kube.create(DanmNetResource, dn));
    yield* Effect.orDie(env.kube.create(NetworkAttachmentDefinitionResource, {
      metadata: { name: "nad1", namespace: "default" },
      spec: { config: '{"cniVersion":"1.0.0","type":"macvlan","master":"ens5"}' },
    }));
  });

const validate = (env: Env, operation: "CREATE" | "UPDATE", object: Json, oldObject?: Json) =>
  env.validate(review(operation, object, { group, ...(oldObject ? { oldObject } : {}) }));

Deno.test("webhook netpol: a bad policy is refused with every problem, each naming its field", async () => {
  await withEnv((env) =>
    Effect.gen(function* () {
      yield* setup(env);
      const r = yield* validate(
        env,
        "CREATE",
        policy({
          podSelector: { matchExpressions: [{ key: "app", operator: "In" }] },
          ingress: [{
            from: [{ podSelector: {} }, { ipBlock: { cidr: "10.0.0.0/16", except: ["10.1.0.0/16"] } }],
            ports: [{ port: 80, endPort: 70 }],
          }],
        }),
      );
      expectDenied(
        r,
        /^MultiNetworkPolicy default\/p: spec\.podSelector\.matchExpressions\[0\]\.values: must be non-empty for operator In; spec\.ingress\[0\]\.ports\[0\]\.endPort: 70 is less than port 80; spec\.ingress\[0\]\.from\[1\]\.ipBlock\.except\[0\]: "10\.1\.0\.0\/16" is not inside cidr 10\.0\.0\.0\/16$/,
      );
      assertEquals(r.response.status?.details?.causes?.map((c) => c.field), [
        "spec.podSelector.matchExpressions[0].values",
        "spec.ingress[0].ports[0].endPort",
        "spec.ingress[0].from[1].ipBlock.except[0]",
      ]);
      // A malformed policy-for is refused; so is what does not even decode (the wire shape), naming the field.
      expectDenied(yield* validate(env, "CREATE", policy({ podSelector: {} }, "net1,")), /policy-for\]: .*entry 1/);
      expectDenied(
        yield* validate(env, "CREATE", policy({ podSelector: {}, ingress: [{ ports: [{ protocol: "tcp" }] }] })),
        /spec\.ingress\[0\]\.ports\[0\]\.protocol: /,
      );
    })
  );
});

Deno.test("webhook netpol: admitted with warnings — absent policy-for, networks that do not exist yet", async () => {
  await withEnv((env) =>
    Effect.gen(function* () {
      yield* setup(env);
      const good = yield* validate(env, "CREATE", policy({ podSelector: {} }, "net1, nad1, DanmNet/net1"));
      expectAllowed(good);
      assertEquals(good.response.warnings ?? [], []);
      const none = yield* validate(env, "CREATE", policy({ podSelector: {} }, null));
      expectAllowed(none);
      assertEquals(none.response.warnings, [`${field}: absent or empty: the policy applies to no network`]);
      const later = yield* validate(
        env,
        "CREATE",
        policy({ podSelector: {} }, "net1, later, other/nad1, TenantNetwork/t, ClusterNetwork/c"),
      );
      expectAllowed(later);
      assertEquals(later.response.warnings, [
        `${field} entry 1: NetworkAttachmentDefinition or DanmNet default/later does not exist (yet): the policy applies to it once it does`,
        `${field} entry 2: NetworkAttachmentDefinition or DanmNet other/nad1 does not exist (yet): the policy applies to it once it does`,
        `${field} entry 3: TenantNetwork default/t does not exist (yet): the policy applies to it once it does`,
        `${field} entry 4: ClusterNetwork c does not exist (yet): the policy applies to it once it does`,
      ]);
      for (const example of npwgExamples) {
        const r = yield* validate(env, "CREATE", {
          ...example,
          metadata: { ...example.metadata as Json, namespace: "default" },
        });
        expectAllowed(r, String((example.metadata as Json).name));
      }
    })
  );
});

Deno.test("webhook netpol: an UPDATE is judged on spec and policy-for only; DELETE is not judged", async () => {
  await withEnv((env) =>
    Effect.gen(function* () {
      yield* setup(env);
      // Stored under older rules (an operator's typo): relabelling it stays possible …
      const old = policy({ podSelector: { matchExpressions: [{ key: "a", operator: "in", values: ["x"] }] } });
      const relabelled = { ...old, metadata: { ...old.metadata as Json, labels: { team: "x" } } };
      expectAllowed(yield* validate(env, "UPDATE", relabelled, old));
      // … changing what it polices is judged.
      expectDenied(
        yield* validate(env, "UPDATE", policy(old.spec as Json, "net1, nad1"), old),
        /matchExpressions\[0\]\.operator: "in" is not In, NotIn, Exists or DoesNotExist/,
      );
      expectAllowed(yield* env.validate(review("DELETE", undefined, { group, oldObject: old })));
    })
  );
});
