// MultiNetworkPolicy admission on the real apiserver with danm's webhook registered over TLS (the same
// registrations as k8s/webhook/webhooks.yaml): a bad policy is refused with a message naming the field, a good one
// is admitted (in either served version), and the warnings reach the client as `Warning` headers.
import { PolicyForAnnotation } from "../../../core/api/netpol.ts";
import { npwgExamples } from "../../fixtures/netpol/examples.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { uniqueName } from "../../harness/cluster.ts";
import { pick } from "../api/rest.ts";
import { type Json, messageOf, startTestWebhook, TestLabel, type TestWebhook } from "./support.ts";

let shared: Promise<TestWebhook> | undefined;
const webhook = () => (shared ??= startTestWebhook());
const opts = { sanitizeOps: false, sanitizeResources: false };
const field = `metadata.annotations[${PolicyForAnnotation}]`;

const policy = (name: string, spec: Json, policyFor?: string): Json => ({
  metadata: { name, ...(policyFor === undefined ? {} : { annotations: { [PolicyForAnnotation]: policyFor } }) },
  spec,
});

Deno.test({
  name: "webhook netpol: a bad policy is refused, the message naming the field and the object",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("bad");
    const r = await w.create(
      "MultiNetworkPolicy",
      policy(name, {
        podSelector: {},
        ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.1.0.0/16"] } }], ports: [{ port: "HTTP" }] }],
      }, "net1"),
    );
    assertEquals(r.status, 403, messageOf(r));
    const m = messageOf(r);
    assertMatch(m, /^admission webhook "multinetworkpolicies\.validate\.danm\.io" denied the request: /);
    assert(m.includes(`MultiNetworkPolicy default/${name}: `), m);
    assert(m.includes('spec.ingress[0].from[0].ipBlock.except[0]: "10.1.0.0/16" is not inside cidr 10.0.0.0/16'), m);
    assert(m.includes('spec.ingress[0].ports[0].port: "HTTP" is not a port name'), m);
    const causes = (pick(r.body, "details", "causes") ?? []) as Array<{ field?: string; reason?: string }>;
    assertEquals(causes.map((c) => [c.field, c.reason]), [
      ["spec.ingress[0].ports[0].port", "port-name"],
      ["spec.ingress[0].from[0].ipBlock.except[0]", "except-inside-cidr"],
    ]);
    // Nothing was stored.
    const get = await w.rest.call(
      "GET",
      `/apis/k8s.cni.cncf.io/v1beta1/namespaces/default/multi-networkpolicies/${name}`,
    );
    assertEquals(get.status, 404);
  },
});

Deno.test({
  name: "webhook netpol: good policies are admitted; an absent policy-for and a missing network come back as warnings",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const net = uniqueName("polnet");
    await w.mustCreate("DanmNet", {
      metadata: { name: net },
      spec: { NetworkID: net, Options: { cidr: "10.77.0.0/24" } },
    });
    const good = await w.create("MultiNetworkPolicy", policy(uniqueName("good"), { podSelector: {} }, net));
    assertEquals(good.status, 201, messageOf(good));
    assertEquals(good.warnings, []);
    const later = uniqueName("later");
    const warned = await w.create(
      "MultiNetworkPolicy",
      policy(uniqueName("warned"), { podSelector: {} }, `${net}, ${later}`),
    );
    assertEquals(warned.status, 201, messageOf(warned));
    assertEquals(warned.warnings, [
      `${field} entry 1: NetworkAttachmentDefinition or DanmNet default/${later} does not exist (yet): the policy applies to it once it does`,
    ]);
    const none = await w.create("MultiNetworkPolicy", policy(uniqueName("none"), { podSelector: {} }));
    assertEquals(none.status, 201, messageOf(none));
    assertEquals(none.warnings, [`${field}: absent or empty: the policy applies to no network`]);
    // The NPWG's examples pass both the CRD schema and the webhook.
    for (const example of npwgExamples) {
      const meta = example.metadata as Json;
      const body = {
        ...example,
        apiVersion: "k8s.cni.cncf.io/v1beta1",
        metadata: { ...meta, name: uniqueName(String(meta.name)) },
      };
      const r = await w.create("MultiNetworkPolicy", body);
      assertEquals(r.status, 201, messageOf(r));
    }
    // Through v1beta2 the webhook judges the same way (both versions registered).
    const v2 = await w.rest.call("POST", "/apis/k8s.cni.cncf.io/v1beta2/namespaces/default/multi-networkpolicies", {
      apiVersion: "k8s.cni.cncf.io/v1beta2",
      kind: "MultiNetworkPolicy",
      ...policy(uniqueName("v2"), { podSelector: {}, egress: [{ ports: [{ port: 0 }] }] }, net),
      metadata: {
        name: uniqueName("v2"),
        labels: { [TestLabel]: w.label },
        annotations: { [PolicyForAnnotation]: net },
      },
    });
    assertEquals(v2.status, 403, messageOf(v2));
    assertMatch(messageOf(v2), /spec\.egress\[0\]\.ports\[0\]\.port: 0 is not a port number/);
  },
});

Deno.test({
  name: "webhook netpol: an UPDATE that breaks a rule is refused",
  ...opts,
  fn: async () => {
    const w = await webhook();
    try {
      const name = uniqueName("upd");
      const created = await w.mustCreate("MultiNetworkPolicy", policy(name, { podSelector: {} }, "n"));
      const r = await w.rest.call(
        "PUT",
        `/apis/k8s.cni.cncf.io/v1beta1/namespaces/default/multi-networkpolicies/${name}`,
        { ...created, spec: { podSelector: {}, egress: [{ ports: [{ port: 80, endPort: 79 }] }] } },
      );
      assertEquals(r.status, 403, messageOf(r));
      assertMatch(messageOf(r), /spec\.egress\[0\]\.ports\[0\]\.endPort: 79 is less than port 80/);
    } finally {
      await w.close();
    }
  },
});
