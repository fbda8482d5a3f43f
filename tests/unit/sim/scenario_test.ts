import { Effect } from "effect";
import { layerMemoryFs, MemoryFileSystem } from "../../../adapters/fs/memory.ts";
import { expandPods, loadScenario, parseScenarioText, simNodes } from "../../../core/sim/scenario.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

Deno.test("scenario: multi-document files and directories, errors name file and object", async () => {
  const fs = new MemoryFileSystem().seed({
    "/s/a.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n---\nkind: Pod\n---\n",
    "/s/sub/b.yml": "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: ns1\nspec: {}\n",
    "/s/readme.txt": "ignored",
  });
  const r = await Effect.runPromise(Effect.provide(loadScenario(["/s"]), layerMemoryFs(fs)));
  assertEquals(r.objects.map((o) => [o.kind, o.name]), [["Namespace", "ns1"]]);
  assertEquals(r.errors.map((e) => e.message), [
    "/s/a.yaml: document 2: apiVersion/kind/metadata: not a Kubernetes object (needs apiVersion, kind and metadata)",
    "/s/sub/b.yml: Pod (document 1): metadata.name: missing",
  ]);
});

Deno.test("scenario: workloads expand into deterministic pods spread over the nodes", () => {
  const { objects } = parseScenarioText(
    "w.yaml",
    `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: web}, annotations: {danm.io/interfaces: '[{"network":"ext"}]'}}
    spec: {containers: [{name: c, image: x}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: dbsvc
  replicas: 2
  template: {spec: {containers: [{name: c, image: x}]}}
---
apiVersion: v1
kind: Node
metadata: {name: w1, annotations: {sim.danm.io/host-interfaces: "eth0, ens4"}}
---
apiVersion: v1
kind: Node
metadata: {name: w2}
`,
  );
  const nodes = simNodes(objects);
  assertEquals(nodes.map((n) => [n.name, n.hostInterfaces]), [["w1", ["eth0", "ens4"]], [
    "w2",
    ["eth0", "ens3", "ens4", "ens5"],
  ]]);
  const { pods, errors } = expandPods(objects, nodes);
  assertEquals(errors, []);
  const summary = pods.map((p) => {
    const m = p.pod.metadata as { name: string; namespace: string; labels?: Record<string, string> };
    const s = p.pod.spec as { nodeName: string; hostname?: string; subdomain?: string };
    return [m.namespace, m.name.replace(/-[a-z0-9]{7}-/, "-H-"), s.nodeName, s.hostname ?? "", s.subdomain ?? ""];
  });
  assertEquals(summary, [
    ["app", "web-H-0", "w1", "", ""],
    ["app", "web-H-1", "w2", "", ""],
    ["app", "web-H-2", "w1", "", ""],
    ["default", "db-0", "w2", "db-0", "dbsvc"],
    ["default", "db-1", "w1", "db-1", "dbsvc"],
  ]);
  assert((pods[0].pod.metadata as { annotations: Record<string, string> }).annotations["danm.io/interfaces"]);
  // Same input, same names.
  assertEquals(
    expandPods(objects, nodes).pods.map((p) => (p.pod.metadata as { name: string }).name),
    pods.map((p) => (p.pod.metadata as { name: string }).name),
  );
});

Deno.test("scenario: no Node objects means two default nodes; bad replicas is an error with the field", () => {
  const { objects } = parseScenarioText(
    "x.yaml",
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: -1, template: {spec: {}}}\n",
  );
  assertEquals(simNodes(objects).map((n) => n.name), ["node-1", "node-2"]);
  assertEquals(expandPods(objects, simNodes(objects)).errors.map((e) => e.message), [
    "x.yaml: Deployment d: spec.replicas: must be a non-negative integer",
  ]);
});
