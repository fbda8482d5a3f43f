// affectedPods: after any one change (a pod's labels, ports or addresses, a pod coming or going, a namespace's
// labels, a policy added, changed or removed) every pod whose compiled rules changed is in the answer — and a change
// no policy cares about touches only the pod itself.
import fc from "fast-check";
import { affectedPods } from "../../../core/netpol/affected.ts";
import { compilePod } from "../../../core/netpol/compile.ts";
import type { PolicyWorld } from "../../../core/netpol/model.ts";
import { policyKeyOf } from "../../../core/netpol/select.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { iface, NET, NET2, policy, world } from "./fixtures.ts";
import { buildWorld, labelArb, podArb, policyArb } from "./gen.ts";

Deno.test("affectedPods: a label no policy reads touches the pod alone; a peer's change touches who it peers with", () => {
  const pods = [
    { name: "srv", labels: { app: "srv" }, ifs: [iface("net1", NET, ["10.0.0.1"])] },
    { name: "cli", labels: { app: "cli" }, ifs: [iface("net1", NET, ["10.0.0.2"])] },
    { name: "x", labels: { app: "x" }, ifs: [iface("net1", NET, ["10.0.0.3"])] },
  ];
  const p = policy("ns1", "p", {
    podSelector: { matchLabels: { app: "srv" } },
    ingress: [{ from: [{ podSelector: { matchLabels: { app: "cli" } } }] }],
  });
  const before = world(pods, [p]);
  const relabel = (name: string, labels: Record<string, string>) =>
    world(pods.map((q) => (q.name === name ? { ...q, labels } : q)), [p]);
  assertEquals([...affectedPods(before, relabel("x", { app: "x", v: "2" }))], ["ns1/x"]);
  assertEquals([...affectedPods(before, relabel("x", { app: "cli" }))].sort(), ["ns1/srv", "ns1/x"]);
  assertEquals([...affectedPods(before, relabel("cli", { app: "y" }))].sort(), ["ns1/cli", "ns1/srv"]);
  assertEquals([...affectedPods(before, world(pods, []))], ["ns1/srv"]);
  assertEquals([...affectedPods(before, world(pods, [p]), ["ns1/srv"])], []);
  assertEquals([...affectedPods(before, relabel("cli", { app: "y" }), ["ns1/cli"])], ["ns1/cli"], "candidates");
});

Deno.test("affectedPods: namespace labels reach policies through namespaceSelectors; egress named ports", () => {
  const pods = [
    { name: "srv", labels: { app: "srv" }, ifs: [iface("net2", NET2, ["10.9.0.1"])] },
    { ns: "ns2", name: "far", labels: { app: "far" }, ifs: [iface("net2", NET2, ["10.9.0.2"])] },
  ];
  const byNs = policy("ns1", "p", {
    podSelector: { matchLabels: { app: "srv" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "a" } } }] }],
  }, "ClusterNetwork/cnet");
  const before = world(pods, [byNs], { ns2: { team: "b" } });
  assertEquals([...affectedPods(before, world(pods, [byNs], { ns2: { team: "a" } }))], ["ns1/srv"]);
  assertEquals([...affectedPods(before, world(pods, [byNs], { ns2: { team: "c" } }))], []);
  const named = policy("ns1", "q", {
    podSelector: { matchLabels: { app: "srv" } },
    egress: [{ to: [{ ipBlock: { cidr: "10.9.0.0/16" } }], ports: [{ port: "http" }] }],
  }, "ClusterNetwork/cnet");
  const withPort = pods.map((p) =>
    p.name === "far" ? { ...p, ports: [{ name: "http", port: 80, protocol: "TCP" as const }] } : p
  );
  assertEquals([...affectedPods(world(pods, [named]), world(withPort, [named]))].sort(), ["ns1/srv", "ns2/far"]);
});

type Change = (w: PolicyWorld) => PolicyWorld;

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  fc.tuple(fc.nat(), labelArb).map(([i, labels]): Change => (w) => {
    const key = [...w.pods.keys()][i % w.pods.size];
    return { ...w, pods: new Map(w.pods).set(key, { ...w.pods.get(key)!, labels }) };
  }),
  fc.tuple(fc.nat(), fc.constantFrom(80, 81, 85)).map(([i, port]): Change => (w) => {
    const key = [...w.pods.keys()][i % w.pods.size];
    const pod = w.pods.get(key)!;
    return { ...w, pods: new Map(w.pods).set(key, { ...pod, ports: [{ name: "http", port, protocol: "TCP" }] }) };
  }),
  fc.nat().map((i): Change => (w) => {
    const key = [...w.pods.keys()][i % w.pods.size];
    const pods = new Map(w.pods);
    const attachments = new Map(w.attachments);
    pods.delete(key);
    attachments.delete(key);
    return { ...w, pods, attachments };
  }),
  fc.tuple(fc.nat(), fc.integer({ min: 100, max: 200 })).map(([i, last]): Change => (w) => {
    const key = [...w.pods.keys()][i % w.pods.size];
    const moved = (w.attachments.get(key) ?? []).map((a) => ({ ...a, v4: [`10.0.0.${last}`] }));
    return { ...w, attachments: new Map(w.attachments).set(key, moved) };
  }),
  fc.constantFrom("a", "b", "c").map((team): Change => (w) => ({
    ...w,
    namespaces: new Map(w.namespaces).set("ns1", { team }),
  })),
  fc.tuple(policyArb, fc.nat()).map(([spec, i]): Change => (w) => {
    const generated = [...buildWorld([], [spec], true).policies.values()][0];
    const keys = [...w.policies.keys()];
    // Replace an existing policy (same key) or add a new one.
    const p = keys.length > 0 && i % 2 === 0
      ? { ...generated, metadata: { ...w.policies.get(keys[i % keys.length])!.metadata } }
      : { ...generated, metadata: { ...generated.metadata, name: "added" } };
    return { ...w, policies: new Map(w.policies).set(policyKeyOf(p), p) };
  }),
  fc.nat().map((i): Change => (w) => {
    const keys = [...w.policies.keys()];
    const policies = new Map(w.policies);
    if (keys.length > 0) policies.delete(keys[i % keys.length]);
    return { ...w, policies };
  }),
);

Deno.test("property: every pod whose compiled rules change is among affectedPods", () => {
  let affected = 0;
  let total = 0;
  fc.assert(
    fc.property(
      fc.array(podArb, { minLength: 2, maxLength: 5 }),
      fc.array(policyArb, { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      changeArb,
      (podSpecs, policySpecs, teamA, change) => {
        const before = buildWorld(podSpecs, policySpecs, teamA);
        const after = change(before);
        const got = affectedPods(before, after);
        for (const key of new Set([...before.pods.keys(), ...after.pods.keys()])) {
          const a = JSON.stringify(compilePod(before, key));
          const b = JSON.stringify(compilePod(after, key));
          if (a !== b) assert(got.has(key), `${key} changed but is not among ${[...got]}`);
        }
        affected += got.size;
        total += before.pods.size;
      },
    ),
    { numRuns: 400 },
  );
  // Not "everything, always": the answer must stay well below recompiling every pod.
  assert(affected < total * 0.8, `affected ${affected} of ${total}`);
});
