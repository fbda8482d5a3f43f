// The node agent's ClusterRole (k8s/netwatcher/rbac.yaml) grants exactly what its code asks of the apiserver.
//
// The calls are read from the sources: every module cmd/netwatcher.ts imports (netwatcher, the CNI daemon, the IPAM
// reclaim loop) is scanned for calls on the Kube port — `kube.get(DanmEpResource, …)`, `(yield* Kube).create(…)`,
// `getOrUndefined(kube, PodResource, …)` — and each call becomes (resource, verb) pairs: an informer is list+watch,
// updateStatus is update on <resource>/status. Where the resource is a variable, DYNAMIC below says which ones it
// can be; a call the scanner cannot resolve fails the test, so a new call cannot slip past unseen.
import * as DanmApi from "../../../core/api/danm.ts";
import * as IpamApi from "../../../core/api/ipam.ts";
import * as K8sApi from "../../../core/api/k8s.ts";
import * as NetpolApi from "../../../core/api/netpol.ts";
import * as ReservedIpApi from "../../../core/api/reservedip.ts";
import * as WebhookKinds from "../../../core/webhook/kinds.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";
import { moduleGraph } from "../../harness/modules.ts";
import { repoRoot } from "../../harness/proc.ts";
import { renderKustomization } from "./kustomize.ts";

/** "group/plural" of every ResourceType exported by core/api, by its exported name. */
const resources = new Map<string, string>();
for (const mod of [DanmApi, IpamApi, K8sApi, NetpolApi, ReservedIpApi, WebhookKinds]) {
  for (const [name, value] of Object.entries(mod)) {
    if (typeof value === "object" && value !== null && "plural" in value && "group" in value) {
      const rt = value as { group: string; plural: string };
      resources.set(name, `${rt.group}/${rt.plural}`);
    }
  }
}
const networks = ["danm.io/danmnets", "danm.io/tenantnetworks", "danm.io/clusternetworks"];
const nads = "k8s.cni.cncf.io/network-attachment-definitions";

/** Resource arguments that are variables: `<file> <expression>` → what they can be (read in the callers). */
const DYNAMIC: Record<string, ReadonlyArray<string>> = {
  // getOrUndefined(kube, rt, …): the directory's networks and NADs (core/podnetworks/selection.ts, core/cni/runtime.ts).
  "core/podnetworks/selection.ts rt": [...networks, nads],
  // cachedOrGet(informer, rt, …): a cache miss of the network caches.
  "core/cni/runtime.ts rt": networks,
  // probe(rt): networkRt(kind), NetworkAttachmentDefinitionResource, NodeResource.
  "core/netwatcher/agent.ts rt": [...networks, nads, "/nodes"],
  "core/netwatcher/agent.ts networkRt(kind)": networks,
  // The policy controller's caches (watched(rt)): policies, pods, namespaces, DanmEps.
  "core/netpol/controller.ts rt": ["k8s.cni.cncf.io/multi-networkpolicies", "/pods", "/namespaces", "danm.io/danmeps"],
  // The per-node status record of a network.
  "core/netwatcher/status.ts rt": networks,
  "core/ipam/kube.ts networkResource(ref.kind)": networks,
  // The claims' retrying wrapper forwards every call: its callers' resources (kube.get(LeaseResource, …)) count.
  "core/webhook/claims.ts rt": [],
  // The webhook's bootstrap patches the caBundle of both of its configurations.
  "core/webhook/bootstrap.ts rt": [
    "admissionregistration.k8s.io/validatingwebhookconfigurations",
    "admissionregistration.k8s.io/mutatingwebhookconfigurations",
  ],
};

const verbsOf: Record<string, ReadonlyArray<string>> = {
  get: ["get"],
  list: ["list"],
  watch: ["watch"],
  informer: ["list", "watch"],
  create: ["create"],
  createReturningMetadata: ["create"],
  update: ["update"],
  updateReturningMetadata: ["update"],
  patch: ["patch"],
  delete: ["delete"],
};

interface Use {
  readonly where: string;
  readonly resource: string;
  readonly verb: string;
}

function usesIn(file: string): Use[] {
  const text = Deno.readTextFileSync(`${repoRoot}/${file}`);
  const receivers = new Set(["kube"]);
  for (const m of text.matchAll(/const (\w+) = yield\* Kube\b/g)) receivers.add(m[1]);
  const out: Use[] = [];
  const resolve = (expr: string, where: string): ReadonlyArray<string> => {
    const known = resources.get(expr);
    if (known) return [known];
    const dynamic = DYNAMIC[`${file} ${expr}`];
    if (dynamic) return dynamic;
    return fail(`${where}: cannot tell which resource "${expr}" is; add "${file} ${expr}" to DYNAMIC`);
  };
  const line = (index: number) => text.slice(0, index).split("\n").length;
  const call = new RegExp(
    String.raw`(?:\b(${[...receivers].join("|")})|\(yield\* Kube\))\s*\.\s*(\w+)\(\s*([\w.]+(?:\([\w.]*\))?)`,
    "g",
  );
  for (const m of text.matchAll(call)) {
    const method = m[2], where = `${file}:${line(m.index)}`;
    if (method === "pipe") continue;
    if (method === "updateStatus") {
      for (const r of resolve(m[3], where)) out.push({ where, resource: `${r}/status`, verb: "update" });
      continue;
    }
    const verbs = verbsOf[method] ?? fail(`${where}: unknown Kube method ${method}`);
    for (const r of resolve(m[3], where)) for (const verb of verbs) out.push({ where, resource: r, verb });
  }
  for (const m of text.matchAll(/getOrUndefined(?:<[^>]*>)?\(\s*kube,\s*([\w.]+)/g)) {
    const where = `${file}:${line(m.index)}`;
    for (const r of resolve(m[1], where)) out.push({ where, resource: r, verb: "get" });
  }
  return out;
}

interface Rule {
  readonly apiGroups: ReadonlyArray<string>;
  readonly resources: ReadonlyArray<string>;
  readonly verbs: ReadonlyArray<string>;
  readonly resourceNames?: ReadonlyArray<string>;
}

const granted = (rules: ReadonlyArray<Rule>, byName = false): Set<string> => {
  const out = new Set<string>();
  for (const r of rules) {
    // Name-limited grants are counted for the verbs; the scanner cannot see which object a call names.
    assert(byName || !r.resourceNames, "the node agent's rules are not limited by name");
    for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) out.add(`${g}/${res} ${v}`);
  }
  return out;
};

/** Every rule bound to the ServiceAccount the workload `kind`/`name` of the base runs as (ClusterRoles and Roles). */
const workloadRules = (kind: string, name: string): ReadonlyArray<Rule> => {
  const base = renderKustomization(`${repoRoot}/k8s`).map((r) => r.object);
  const workload = base.find((o) => o.kind === kind && o.metadata.name === name) ?? fail(`no ${kind} ${name}`);
  const sa = (workload as unknown as { spec: { template: { spec: { serviceAccountName: string } } } }).spec.template
    .spec.serviceAccountName;
  const bindings = base.filter((o) =>
    (o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding") &&
    (o.subjects as Array<{ kind: string; name: string }>).some((s) => s.kind === "ServiceAccount" && s.name === sa)
  );
  assert(bindings.length > 0, `bindings for ${sa}`);
  return bindings.flatMap((b) => {
    const ref = b.roleRef as { kind: string; name: string };
    const role = base.find((o) => o.kind === ref.kind && o.metadata.name === ref.name) ?? fail(`no ${ref.name}`);
    return role.rules as ReadonlyArray<Rule>;
  });
};

const nodeAgentRules = (): ReadonlyArray<Rule> => {
  const base = renderKustomization(`${repoRoot}/k8s`).map((r) => r.object);
  assert(
    !base.some((o) => o.kind === "RoleBinding" && JSON.stringify(o.subjects).includes(`"danm-netwatcher"`)),
    "no Role for the node agent",
  );
  return workloadRules("DaemonSet", "danm-netwatcher");
};

Deno.test("rbac: the scanner reads the node agent's modules and finds its calls", () => {
  const modules = moduleGraph("cmd/netwatcher.ts");
  for (const m of ["core/netwatcher/agent.ts", "core/cni/node.ts", "core/cni/endpoints.ts", "core/ipam/reclaim.ts"]) {
    assert(modules.includes(m), `${m} is imported`);
  }
  const uses = modules.flatMap(usesIn);
  // Spot checks, one per component: a false "nothing found" would make the next test vacuous.
  const has = (resource: string, verb: string) => uses.some((u) => u.resource === resource && u.verb === verb);
  assert(has("danm.io/danmnets/status", "update"), "netwatcher's status record");
  assert(has("/pods", "patch"), "the CNI's network-status annotation");
  assert(has("danm.io/ipblocks", "delete"), "IPAM");
  assert(has("/events", "create"), "netwatcher's Events");
  assert(has("/events", "patch"), "the CNI's aggregated pod Events");
});

Deno.test("rbac: k8s/netwatcher grants the node agent exactly the verbs its code uses", () => {
  const uses = moduleGraph("cmd/netwatcher.ts").flatMap(usesIn);
  const needed = new Map<string, string>();
  for (const u of uses) if (!needed.has(`${u.resource} ${u.verb}`)) needed.set(`${u.resource} ${u.verb}`, u.where);
  const have = granted(nodeAgentRules());
  const missing = [...needed].filter(([k]) => !have.has(k)).map(([k, where]) => `${k} (${where})`);
  const unused = [...have].filter((k) => !needed.has(k));
  assertEquals(missing, [], "calls the ClusterRole does not allow");
  assertEquals(unused, [], "grants no call needs");
});

Deno.test("rbac: the curated list of the node agent's rights (review aid: changes here are deliberate)", () => {
  const have = [...granted(nodeAgentRules())].sort();
  assertEquals(have, [
    "/events create",
    "/events patch",
    "/namespaces list",
    "/namespaces watch",
    "/nodes list",
    "/nodes watch",
    "/pods get",
    "/pods list",
    "/pods patch",
    "/pods watch",
    "danm.io/clusternetworks get",
    "danm.io/clusternetworks list",
    "danm.io/clusternetworks watch",
    "danm.io/clusternetworks/status update",
    "danm.io/danmeps create",
    "danm.io/danmeps delete",
    "danm.io/danmeps get",
    "danm.io/danmeps list",
    "danm.io/danmeps watch",
    "danm.io/danmnets get",
    "danm.io/danmnets list",
    "danm.io/danmnets watch",
    "danm.io/danmnets/status update",
    "danm.io/ipblocks create",
    "danm.io/ipblocks delete",
    "danm.io/ipblocks get",
    "danm.io/ipblocks list",
    "danm.io/ipblocks update",
    "danm.io/reservedips list",
    "danm.io/reservedips watch",
    "danm.io/tenantnetworks get",
    "danm.io/tenantnetworks list",
    "danm.io/tenantnetworks watch",
    "danm.io/tenantnetworks/status update",
    "k8s.cni.cncf.io/multi-networkpolicies list",
    "k8s.cni.cncf.io/multi-networkpolicies watch",
    "k8s.cni.cncf.io/network-attachment-definitions get",
    "k8s.cni.cncf.io/network-attachment-definitions list",
    "k8s.cni.cncf.io/network-attachment-definitions patch",
    "k8s.cni.cncf.io/network-attachment-definitions watch",
  ]);
});

/** The workloads whose ServiceAccount rights are checked against their code, besides the node agent above. */
const controllers = [
  { entry: "cmd/webhook.ts", kind: "Deployment", name: "danm-webhook" },
  { entry: "cmd/svcwatcher.ts", kind: "Deployment", name: "danm-svcwatcher" },
] as const;

for (const c of controllers) {
  Deno.test(`rbac: k8s grants ${c.name} exactly the verbs its code uses (ClusterRole and Role)`, () => {
    const uses = moduleGraph(c.entry).flatMap(usesIn);
    assert(uses.length > 10, `the scanner finds ${c.name}'s calls`);
    const needed = new Map<string, string>();
    for (const u of uses) if (!needed.has(`${u.resource} ${u.verb}`)) needed.set(`${u.resource} ${u.verb}`, u.where);
    const have = granted(workloadRules(c.kind, c.name), true);
    const missing = [...needed].filter(([k]) => !have.has(k)).map(([k, where]) => `${k} (${where})`);
    const unused = [...have].filter((k) => !needed.has(k));
    assertEquals(missing, [], "calls the manifests do not allow");
    assertEquals(unused, [], "grants no call needs");
  });
}
