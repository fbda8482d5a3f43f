// NetworkAttachmentDefinitions as pseudo-networks: which configs count, the master rewrite, and that a rewritten NAD
// asks for exactly what it asked before (DANM deleted its own interface here).
import type { NetworkAttachmentDefinition } from "../../../core/api/k8s.ts";
import { nadDemand, nadRestore, nadRewrite, OriginalMasterAnnotation, readNad } from "../../../core/netwatcher/nad.ts";
import { jsonPatch } from "../../../adapters/kube/patch.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";

const nad = (config: unknown, annotations?: Record<string, string>): NetworkAttachmentDefinition => ({
  metadata: {
    name: "vlantest",
    namespace: "default",
    resourceVersion: "7",
    creationTimestamp: "2025-01-01T00:00:00Z",
    ...(annotations ? { annotations } : {}),
  },
  spec: { config: typeof config === "string" ? config : JSON.stringify(config) },
});

const docExample = { cniVersion: "0.3.1", name: "vlantest", type: "ipvlan", master: "tenant-bond", vlan: 500 };

const demandOf = (n: NetworkAttachmentDefinition) => nadDemand(n, readNad(n), "multicast");
const apply = (n: NetworkAttachmentDefinition, ops: ReturnType<typeof nadRewrite>) =>
  jsonPatch(n, ops ?? fail("expected a patch")) as NetworkAttachmentDefinition;

Deno.test("NAD: only single-plugin configs with vlan/vxlan count", () => {
  assertEquals(
    readNad(nad({ cniVersion: "0.3.1", name: "x", plugins: [{ type: "ipvlan", vlan: 5 }] }))._tag,
    "Ignored",
  );
  assertEquals(readNad(nad({ name: "x", type: "ipvlan", master: "eth1" }))._tag, "Ignored");
  assertEquals(readNad(nad("not json"))._tag, "Ignored");
  assertEquals(readNad(nad("[1,2]"))._tag, "Ignored");
  const bad = readNad(nad({ name: "x", type: "ipvlan", master: "eth1", vlan: 5000 }));
  if (bad._tag !== "Invalid") return fail(`expected Invalid, got ${bad._tag}`);
  assertMatch(bad.problem, /spec\.config: vlan/);
  assertEquals(demandOf(nad(docExample))?.interfaces, [
    { kind: "vlan", name: "vlantest.500", parent: "tenant-bond", id: 500 },
  ]);
  assertEquals(demandOf(nad({ ...docExample, vlan: undefined, vxlan: 600 }))?.interfaces[0]?.name, "vx_vlantest");
});

Deno.test("NAD: the master rewrite keeps every other key and remembers the original", () => {
  const before = nad({ ...docExample, ipam: { type: "static" } });
  const ops = nadRewrite(before, readNad(before), demandOf(before));
  assertEquals(ops?.[0], { op: "test", path: "/metadata/resourceVersion", value: "7" });
  const after = apply(before, ops);
  assertEquals(JSON.parse(after.spec!.config!), { ...docExample, master: "vlantest.500", ipam: { type: "static" } });
  assertEquals(Object.keys(JSON.parse(after.spec!.config!)), ["cniVersion", "name", "type", "master", "vlan", "ipam"]);
  assertEquals(after.metadata.annotations, { [OriginalMasterAnnotation]: "tenant-bond" });
  // Pretty-printed configs stay pretty-printed.
  const pretty = nad(JSON.stringify(docExample, null, 2));
  assert(apply(pretty, nadRewrite(pretty, readNad(pretty), demandOf(pretty))).spec!.config!.includes("\n"));
});

Deno.test("NAD: a rewritten NAD yields the same demand and no further rewrite (no self-triggered delete loop)", () => {
  const before = nad(docExample, { other: "kept" });
  const after = apply(before, nadRewrite(before, readNad(before), demandOf(before)));
  assertEquals(after.metadata.annotations, { other: "kept", [OriginalMasterAnnotation]: "tenant-bond" });
  assertEquals(demandOf(after), demandOf(before));
  assertEquals(nadRewrite(after, readNad(after), demandOf(after)), undefined);
  assertEquals(nadRestore(after), undefined, "a NAD that still needs its interface keeps its master");
});

Deno.test("NAD: later edits — VLAN change, a new master from the user, vlan removed", () => {
  const rewritten = apply(
    nad(docExample),
    nadRewrite(nad(docExample), readNad(nad(docExample)), demandOf(nad(docExample))),
  );
  const cfg = JSON.parse(rewritten.spec!.config!);
  // VLAN 500 → 501: the old master is one of its own names, so the original host device still applies.
  const vlan501 = { ...rewritten, spec: { config: JSON.stringify({ ...cfg, vlan: 501 }) } };
  assertEquals(demandOf(vlan501)?.interfaces[0], {
    kind: "vlan",
    name: "vlantest.501",
    parent: "tenant-bond",
    id: 501,
  });
  assertEquals(
    JSON.parse(apply(vlan501, nadRewrite(vlan501, readNad(vlan501), demandOf(vlan501))).spec!.config!).master,
    "vlantest.501",
  );
  // The user points master at another device: that wins, and becomes the remembered original.
  const moved = { ...rewritten, spec: { config: JSON.stringify({ ...cfg, master: "eth2" }) } };
  assertEquals(demandOf(moved)?.interfaces[0]?.parent, "eth2");
  assertEquals(apply(moved, nadRewrite(moved, readNad(moved), demandOf(moved))).metadata.annotations, {
    [OriginalMasterAnnotation]: "eth2",
  });
  // vlan removed: no demand, and master goes back to the original.
  const { vlan: _v, ...plain } = cfg;
  const noVlan = { ...rewritten, spec: { config: JSON.stringify(plain) } };
  assertEquals(demandOf(noVlan), undefined);
  const restored = apply(noVlan, nadRestore(noVlan));
  assertEquals(JSON.parse(restored.spec!.config!).master, "tenant-bond");
  assertEquals(restored.metadata.annotations, {});
});

Deno.test("NAD: master naming its own interface without the annotation is refused, not looped on", () => {
  const d = demandOf(nad({ ...docExample, master: "vlantest.500" }));
  assertMatch(d?.problem ?? "", /own host interface.*original master is unknown/);
  assertEquals(d?.interfaces, []);
});
