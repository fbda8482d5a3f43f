// The MultiNetworkPolicy wire shape and the `k8s.v1.cni.cncf.io/policy-for` annotation.
import { Effect, Schema } from "effect";
import { MultiNetworkPolicy, parsePolicyFor } from "../../../core/api/netpol.ts";
import { AnnotationError } from "../../../core/api/annotations.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runSync(Effect.result(e));

Deno.test("policy-for: names, namespaced names and danm kinds", () => {
  const r = run(parsePolicyFor(" net1, other/net2 ,ClusterNetwork/flannel,TenantNetwork/tn, DanmNet/dn"));
  assert(r._tag === "Success");
  assertEquals(r.success, [
    { name: "net1" },
    { namespace: "other", name: "net2" },
    { kind: "ClusterNetwork", name: "flannel" },
    { kind: "TenantNetwork", name: "tn" },
    { kind: "DanmNet", name: "dn" },
  ]);
});

Deno.test("policy-for: bad entries name the entry and the field", () => {
  for (
    const [value, entry, field] of [
      ["", 0, undefined],
      ["a,,b", 1, undefined],
      ["a/b/c", 0, undefined],
      ["a, Net_1", 1, "name"],
      ["Pods/x", 0, "namespace"],
    ] as const
  ) {
    const r = run(parsePolicyFor(value));
    assert(r._tag === "Failure", value);
    assert(r.failure instanceof AnnotationError);
    assertEquals(r.failure.entry, entry, value);
    assertEquals(r.failure.field, field, value);
  }
});

Deno.test("MultiNetworkPolicy: the NPWG example decodes, nulls count as absent", () => {
  const policy = Schema.decodeUnknownSync(MultiNetworkPolicy)({
    apiVersion: "k8s.cni.cncf.io/v1beta1",
    kind: "MultiNetworkPolicy",
    metadata: { name: "p", namespace: "ns", annotations: { "k8s.v1.cni.cncf.io/policy-for": "macvlan-net" } },
    spec: {
      podSelector: { matchLabels: { app: "db" } },
      policyTypes: ["Ingress", "Egress"],
      ingress: [{
        from: [
          { ipBlock: { cidr: "172.17.0.0/16", except: ["172.17.1.0/24"] } },
          { namespaceSelector: { matchLabels: { project: "p" } }, podSelector: null },
          { podSelector: { matchExpressions: [{ key: "role", operator: "In", values: ["fe"] }] } },
        ],
        ports: [{ protocol: "TCP", port: 6379 }, { port: "metrics" }, { protocol: "UDP", port: 32000, endPort: 32768 }],
      }],
      egress: [{ to: [{ ipBlock: { cidr: "fd00::/64" } }], ports: null }],
    },
  });
  assertEquals(policy.spec?.ingress?.[0].ports?.[2].endPort, 32768);
  assertEquals(policy.spec?.egress?.[0].ports, null);
});
