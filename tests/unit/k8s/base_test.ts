// The kustomize base k8s/ as `kubectl apply -k k8s` would apply it: what it contains, and the rules every manifest
// keeps — one image per component with one layout, no legacy token Secrets, no beta APIs, explicit RBAC, consistent
// names and paths.
// (tests/integration/k8s/manifests_test.ts has the apiserver validate the same objects.)
import { components } from "../../../k8s/images/build.ts";
import { assert, assertEquals, assertMatch, assertThrows, fail } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";
import { type K8sObject, KustomizeError, namespacedKinds, renderKustomization } from "./kustomize.ts";

const base = renderKustomization(`${repoRoot}/k8s`);
const objects = base.map((r) => r.object);
const Namespace = "kube-system";
/** The image each workload runs (k8s/images/build.ts builds them). */
const imageOf: Record<string, string> = {
  "danm-netwatcher": "danm-node",
  "danm-webhook": "danm-webhook",
  "danm-svcwatcher": "danm-svcwatcher",
};

type Json = Record<string, unknown>;
interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: string[];
  readonly args?: string[];
  readonly workingDir?: string;
  readonly env?: Array<{ name: string; value?: string; valueFrom?: Json }>;
  readonly ports?: Array<{ name?: string; containerPort: number }>;
  readonly volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }>;
  readonly livenessProbe?: { httpGet?: { port: number | string } };
  readonly readinessProbe?: { httpGet?: { port: number | string } };
}
interface PodSpec {
  readonly serviceAccountName?: string;
  readonly automountServiceAccountToken?: boolean;
  readonly initContainers?: Container[];
  readonly containers: Container[];
  readonly volumes?: Array<{ name: string; hostPath?: { path: string }; secret?: Json; projected?: Json }>;
}
interface Workload extends K8sObject {
  readonly spec: {
    replicas?: number;
    selector: { matchLabels: Json };
    template: { metadata: { labels: Json }; spec: PodSpec };
  };
}

const workloads = objects.filter((o) => o.kind === "Deployment" || o.kind === "DaemonSet") as Workload[];
const find = (kind: string, name: string) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name) ?? fail(`no ${kind} ${name} in the base`);
const workload = (kind: string, name: string) => find(kind, name) as Workload;
const allContainers = (
  w: Workload,
) => [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers];
const flag = (c: Container, name: string) => c.args?.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

Deno.test("base: renders the CRDs, the node agent, svcwatcher and the webhook, in kube-system", () => {
  const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
  assertEquals(ids, [
    "ClusterRole/danm-netwatcher",
    "ClusterRole/danm-svcwatcher",
    "ClusterRole/danm-webhook",
    "ClusterRoleBinding/danm-netwatcher",
    "ClusterRoleBinding/danm-svcwatcher",
    "ClusterRoleBinding/danm-webhook",
    "CustomResourceDefinition/clusternetworks.danm.io",
    "CustomResourceDefinition/danmeps.danm.io",
    "CustomResourceDefinition/danmnets.danm.io",
    "CustomResourceDefinition/ipblocks.danm.io",
    "CustomResourceDefinition/multi-networkpolicies.k8s.cni.cncf.io",
    "CustomResourceDefinition/reservedips.danm.io",
    "CustomResourceDefinition/tenantconfigs.danm.io",
    "CustomResourceDefinition/tenantnetworks.danm.io",
    "DaemonSet/danm-netwatcher",
    "Deployment/danm-svcwatcher",
    "Deployment/danm-webhook",
    "MutatingWebhookConfiguration/danm-webhook",
    "PodDisruptionBudget/danm-svcwatcher",
    "PodDisruptionBudget/danm-webhook",
    "Role/danm-svcwatcher-leader-election",
    "Role/danm-webhook",
    "RoleBinding/danm-svcwatcher-leader-election",
    "RoleBinding/danm-webhook",
    "Service/danm-webhook",
    "ServiceAccount/danm-netwatcher",
    "ServiceAccount/danm-svcwatcher",
    "ServiceAccount/danm-webhook",
    "ValidatingWebhookConfiguration/danm-webhook",
  ]);
  for (const o of objects) {
    if (namespacedKinds.has(o.kind)) assertEquals(o.metadata.namespace, Namespace, `${o.kind}/${o.metadata.name}`);
  }
});

Deno.test("base: every manifest already names the base's namespace (the namespace transformer changes nothing)", () => {
  for (const dir of ["netwatcher", "svcwatcher", "webhook", "crds"]) {
    for (const { object: o, source } of renderKustomization(`${repoRoot}/k8s/${dir}`)) {
      if (namespacedKinds.has(o.kind)) assertEquals(o.metadata.namespace, Namespace, `${dir}/${source} ${o.kind}`);
    }
  }
  for (const o of objects.filter((o) => o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding")) {
    for (const s of o.subjects as Array<{ kind: string; namespace?: string }>) {
      assertEquals(s.namespace, Namespace, `${o.kind}/${o.metadata.name} subject`);
    }
  }
});

Deno.test("base: k8s/crds is the generated crds/, referenced, never copied; every file of crds/ is applied", () => {
  // One copy of each CRD: k8s/crds holds only its kustomization, which names the crds/ kustomization.
  assertEquals([...Deno.readDirSync(`${repoRoot}/k8s/crds`)].map((e) => e.name), ["kustomization.yaml"]);
  const sources = renderKustomization(`${repoRoot}/k8s/crds`).map((r) => r.source);
  assert(sources.every((s) => s.startsWith("../../crds/")), `every CRD of k8s/crds comes from crds/: ${sources}`);
  // Each file of crds/ is listed by its kustomization (an unlisted file would silently not be applied).
  const files = [...Deno.readDirSync(`${repoRoot}/crds`)].map((e) => e.name).filter((n) => n !== "kustomization.yaml");
  assertEquals(sources.map((s) => s.slice("../../crds/".length)).sort(), files.sort());
  assert(!objects.some((o) => o.metadata.name === "network-attachment-definitions.k8s.cni.cncf.io"), "not in base");
});

Deno.test("base: no legacy service-account token Secret, no alpha/beta API, tokens only projected", () => {
  for (const o of [...objects, ...renderKustomization(`${repoRoot}/k8s/nad-crd`).map((r) => r.object)]) {
    const id = `${o.kind}/${o.metadata.name}`;
    assert(!/\/v\d+(alpha|beta)\d*$/.test(o.apiVersion), `${id}: ${o.apiVersion} is not a GA API`);
    assert(!(o.kind === "Secret" && o.type === "kubernetes.io/service-account-token"), `${id}: a legacy token Secret`);
    assert(!(o.kind === "ServiceAccount" && "secrets" in o), `${id}: names token Secrets`);
  }
  for (const w of workloads) {
    const pod = w.spec.template.spec;
    assert(pod.automountServiceAccountToken !== false, `${w.metadata.name}: uses its projected token`);
    for (const v of pod.volumes ?? []) assert(!v.secret, `${w.metadata.name}: no Secret volume (${v.name})`);
  }
});

Deno.test("base: every workload runs as a ServiceAccount of the base, bound only to roles of the base", () => {
  const accounts = new Set(objects.filter((o) => o.kind === "ServiceAccount").map((o) => o.metadata.name));
  for (const w of workloads) {
    const sa = w.spec.template.spec.serviceAccountName ?? fail(`${w.metadata.name}: no serviceAccountName`);
    assert(accounts.has(sa), `${w.kind}/${w.metadata.name}: ServiceAccount ${sa} is not in the base`);
  }
  for (const b of objects.filter((o) => o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding")) {
    const ref = b.roleRef as { kind: string; name: string };
    find(ref.kind, ref.name);
    if (b.kind === "RoleBinding" && ref.kind === "Role") {
      assertEquals(find("Role", ref.name).metadata.namespace, b.metadata.namespace);
    }
    for (const s of b.subjects as Array<{ kind: string; name: string }>) {
      assertEquals(s.kind, "ServiceAccount", `${b.metadata.name}: binds ServiceAccounts only`);
      assert(accounts.has(s.name), `${b.metadata.name}: ServiceAccount ${s.name} is not in the base`);
    }
  }
  const used = new Set(workloads.map((w) => w.spec.template.spec.serviceAccountName));
  for (const sa of accounts) assert(used.has(sa), `ServiceAccount ${sa} is used by no workload`);
});

Deno.test("base: RBAC rules spell out their verbs, resources and groups (no wildcards)", () => {
  for (const r of objects.filter((o) => o.kind === "ClusterRole" || o.kind === "Role")) {
    assert(!("aggregationRule" in r), `${r.metadata.name}: no aggregation`);
    const rules = r.rules as Array<
      { apiGroups?: string[]; resources?: string[]; verbs: string[]; nonResourceURLs?: string[] }
    >;
    assert(rules.length > 0, `${r.metadata.name}: has rules`);
    for (const rule of rules) {
      const where = `${r.kind}/${r.metadata.name} ${JSON.stringify(rule)}`;
      assert(!rule.nonResourceURLs, `${where}: no nonResourceURLs`);
      for (const field of [rule.verbs, rule.resources ?? [], rule.apiGroups ?? []]) {
        assert(field.length > 0 && !field.some((v) => v.includes("*")), `${where}: explicit, no "*"`);
      }
      for (const v of rule.verbs) {
        assert(
          ["get", "list", "watch", "create", "update", "patch", "delete"].includes(v),
          `${where}: ${v} (no escalate, bind, impersonate, deletecollection)`,
        );
      }
      assert(!rule.resources!.includes("secrets") || r.kind === "Role", `${where}: Secrets only namespaced`);
    }
  }
});

Deno.test("base: one image per component, one layout — /opt/danm, DENO_DIR, --cached-only, least permissions", () => {
  const perms: Record<string, string[]> = {
    // And the V8 young-generation cap its memory bound relies on (bench:overload).
    "netwatcher.ts": ["--allow-all", "--v8-flags=--max-semi-space-size=4"],
    "svcwatcher.ts": ["--allow-net", "--allow-env", "--allow-read", "--allow-sys=hostname"],
    "webhook.ts": ["--allow-net", "--allow-env", "--allow-read", "--allow-write=/var/run/danm-webhook/tls"],
  };
  const seen = new Set<string>();
  for (const w of workloads) {
    const image = imageOf[w.metadata.name] ?? fail(`${w.metadata.name}: no image known for it`);
    const component = components.find((c) => c.name === image) ?? fail(`k8s/images/build.ts builds no ${image}`);
    for (const c of allContainers(w)) {
      const where = `${w.metadata.name}/${c.name}`;
      assertEquals(c.image, `${image}:latest`, `${where}: image`);
      assertEquals(c.workingDir, undefined, `${where}: no workingDir (every path is absolute)`);
      assertEquals(c.env?.find((e) => e.name === "DENO_DIR")?.value, "/opt/danm/.deno", `${where}: DENO_DIR`);
      const command = c.command ?? fail(`${where}: no command`);
      if (command[0] === "/bin/sh") {
        assertEquals(command, ["/bin/sh", "/opt/danm/k8s/images/install-cni.sh"], where);
        assert(component.files.includes("k8s/images/install-cni.sh"), `${image} carries install-cni.sh`);
        assert(component.entries.includes("cmd/install_cni.ts"), `${image} carries cmd/install_cni.ts`);
        seen.add("install-cni.sh");
        continue;
      }
      assertEquals(command.slice(0, 3), ["deno", "run", "--cached-only"], `${where}: command`);
      const script = command.at(-1)!;
      assertMatch(script, /^\/opt\/danm\/cmd\/\w+\.ts$/, `${where}: an absolute /opt/danm/cmd path`);
      const file = script.slice("/opt/danm/cmd/".length);
      assert(component.entries.includes(`cmd/${file}`), `${image} carries cmd/${file}`);
      assertEquals(command.slice(3, -1), perms[file] ?? fail(`${where}: no permission set for ${file}`), where);
      assertEquals(command, component.entrypoint, `${where}: the image's own entry point`);
      seen.add(file);
    }
  }
  assertEquals([...seen].sort(), ["install-cni.sh", "netwatcher.ts", "svcwatcher.ts", "webhook.ts"]);
});

Deno.test("base: the image builder's components agree with the manifests — users, CNI clients, entry points", () => {
  for (const w of workloads) {
    const component = components.find((c) => c.name === imageOf[w.metadata.name])!;
    const spec = w.spec.template.spec as PodSpec & { securityContext?: { runAsUser?: number } };
    // A pod-level user overrides the image's; without one (the node agent) the image's is the one that runs.
    const user = spec.securityContext?.runAsUser;
    if (user !== undefined) assertEquals(component.user.split(":")[0], String(user), `${component.name}: user`);
    else assertEquals(component.user, "0", `${component.name}: root, as its containers need`);
  }
  // The node image carries the CNI clients it installs on the host.
  const node = components.find((c) => c.name === "danm-node")!;
  for (const client of ["cmd/danm.ts", "cmd/fakeipam.ts"]) assert(node.entries.includes(client), client);
  assert(node.release, "danm-node names its staged CNI runtime (RELEASE)");
  // Every binary imports only what an image carries: its module graph, resolved from cmd/.
  for (const entry of Deno.readDirSync(`${repoRoot}/cmd`)) {
    for (const m of Deno.readTextFileSync(`${repoRoot}/cmd/${entry.name}`).matchAll(/from "\.\.\/(\w+)\//g)) {
      assert(["core", "adapters"].includes(m[1]), `cmd/${entry.name} imports from ${m[1]}/, which no image has`);
    }
  }
});

Deno.test("base: the node agent — install container, CNI socket, host paths", () => {
  const ds = workload("DaemonSet", "danm-netwatcher");
  const pod = ds.spec.template.spec as PodSpec & {
    hostNetwork?: boolean;
    tolerations?: Json[];
    priorityClassName?: string;
  };
  assert(pod.hostNetwork, "host network: the VLAN/VXLAN host interfaces live there");
  assertEquals(pod.priorityClassName, "system-node-critical");
  assertEquals(pod.tolerations, [{ operator: "Exists" }]);
  const [install] = pod.initContainers ?? fail("no init container");
  const [agent] = pod.containers;
  const hostPathOf = (mounts: Container["volumeMounts"], path: string) => {
    const m = mounts?.find((m) => m.mountPath === path) ?? fail(`nothing mounted at ${path}`);
    return (pod.volumes?.find((v) => v.name === m.name)?.hostPath ?? fail(`${m.name} is not a hostPath`)).path;
  };
  const env = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value ?? fail(`no ${name}`);
  // The install container writes into the host's CNI directories and stages launchers at the host path itself.
  assertEquals(hostPathOf(install.volumeMounts, env(install, "DANM_CNI_BIN_DIR")), "/opt/cni/bin");
  assertEquals(hostPathOf(install.volumeMounts, env(install, "DANM_CNI_CONF_DIR")), "/etc/cni/net.d");
  const stage = env(install, "DANM_STAGE_DIR");
  assertEquals(hostPathOf(install.volumeMounts, stage), stage, "staged at the same path as on the host");
  // The daemon's socket is where 00-danm.conflist tells the clients to look, on a host directory.
  const socket = flag(agent, "cni-socket") ?? fail("no --cni-socket");
  const args = install.args ?? [];
  assertEquals(args[args.indexOf("--daemon-socket") + 1], socket);
  assertEquals(hostPathOf(agent.volumeMounts, socket.replace(/\/[^/]+$/, "")), socket.replace(/\/[^/]+$/, ""));
  assert(flag(agent, "cni-state-dir")!.startsWith(`${socket.replace(/\/[^/]+$/, "")}/`), "state next to the socket");
  // Delegates run inside the agent: the same plugin binaries, configs and (for fakeipam launchers) stage as the host.
  for (const path of ["/opt/cni/bin", "/etc/cni/net.d", stage]) {
    assertEquals(hostPathOf(agent.volumeMounts, path), path);
    assert(agent.volumeMounts!.find((m) => m.mountPath === path)!.readOnly, `${path} read-only in the agent`);
  }
  const netns = agent.volumeMounts!.find((m) => m.mountPath === "/var/run/netns") ?? fail("no /var/run/netns");
  assertEquals(netns.mountPropagation, "HostToContainer");
  assertEquals(
    agent.env?.find((e) => e.name === "NODE_NAME")?.valueFrom,
    { fieldRef: { fieldPath: "spec.nodeName" } },
    "NODE_NAME comes from the downward API",
  );
});

Deno.test("base: svcwatcher and the webhook — replicas, disruption budgets, Service, webhook targets", () => {
  const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget") as Array<
    K8sObject & { spec: { minAvailable: number; selector: { matchLabels: Json } } }
  >;
  for (const name of ["danm-svcwatcher", "danm-webhook"]) {
    const d = workload("Deployment", name);
    assertEquals(d.spec.replicas, 2, `${name}: replicas`);
    const pdb = pdbs.find((p) => p.metadata.name === name) ?? fail(`no PodDisruptionBudget ${name}`);
    assertEquals(pdb.spec.minAvailable, 1);
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) {
      assertEquals(d.spec.template.metadata.labels[k], v, `${name}: the budget selects its pods`);
    }
  }
  const svcw = workload("Deployment", "danm-svcwatcher").spec.template.spec.containers[0];
  assertEquals(flag(svcw, "lease-name"), "danm-svcwatcher");
  const role = find("Role", "danm-svcwatcher-leader-election").rules as Array<{ resourceNames?: string[] }>;
  assert(role.some((r) => r.resourceNames?.includes("danm-svcwatcher")), "the Lease the Role names");

  const webhook = workload("Deployment", "danm-webhook");
  const container = webhook.spec.template.spec.containers[0];
  const service = find("Service", "danm-webhook") as K8sObject & {
    spec: { selector: Json; ports: Array<{ port: number; targetPort: string }> };
  };
  assertEquals(flag(container, "service-name"), service.metadata.name);
  for (const [k, v] of Object.entries(service.spec.selector)) assertEquals(webhook.spec.template.metadata.labels[k], v);
  const target = container.ports!.find((p) => p.name === service.spec.ports[0].targetPort) ?? fail("targetPort");
  assertEquals(String(target.containerPort), flag(container, "port"));
  for (const kind of ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]) {
    const cfg = find(kind, flag(container, "webhook-config-name") ?? fail("--webhook-config-name"));
    for (const hook of cfg.webhooks as Array<{ clientConfig: { service: Json } }>) {
      assertEquals(hook.clientConfig.service.namespace, Namespace);
      assertEquals(hook.clientConfig.service.name, service.metadata.name);
      assertEquals(hook.clientConfig.service.port, service.spec.ports[0].port);
    }
  }
});

Deno.test("base: every probe names a port the container has", () => {
  for (const w of workloads) {
    for (const c of allContainers(w)) {
      for (const probe of [c.livenessProbe, c.readinessProbe]) {
        const port = probe?.httpGet?.port;
        if (port === undefined) continue;
        assert(
          c.ports?.some((p) => p.name === port || p.containerPort === port),
          `${w.metadata.name}/${c.name}: probe port ${port}`,
        );
      }
    }
  }
});

Deno.test("kustomize renderer: fails on what it does not implement", () => {
  const dir = Deno.makeTempDirSync({ prefix: "danm-kustomize-" });
  const write = (path: string, text: string) => {
    Deno.mkdirSync(`${dir}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
    Deno.writeTextFileSync(`${dir}/${path}`, text);
  };
  const head = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";
  const sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n";
  try {
    write("kustomization.yaml", `${head}resources: [a.yaml, sub]\nnamespace: ns\n`);
    write("a.yaml", sa);
    write("sub/kustomization.yaml", `${head}resources: [cr.yaml]\n`);
    write(
      "sub/cr.yaml",
      "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\nrules: []\n",
    );
    assertEquals(renderKustomization(dir).map((r) => [r.source, r.object.metadata.namespace]), [
      ["a.yaml", "ns"],
      ["sub/cr.yaml", undefined],
    ]);
    // Another kustomization may lie outside the root (k8s/crds names ../../crds so).
    write("other/kustomization.yaml", `${head}resources: [../sub]\n`);
    assertEquals(renderKustomization(`${dir}/other`).map((r) => r.source), ["../sub/cr.yaml"]);
    const rejects = (kustomization: string, includes: string) => {
      write("kustomization.yaml", kustomization);
      assertThrows(() => renderKustomization(dir), includes);
      try {
        renderKustomization(dir);
      } catch (e) {
        assert(e instanceof KustomizeError, `a KustomizeError, not ${e}`);
      }
    };
    rejects(`${head}resources: [a.yaml]\ncommonLabels: {a: b}\n`, `"commonLabels" is not supported`);
    rejects(`${head}resources: [a.yaml]\nimages: []\n`, `"images" is not supported`);
    rejects(`${head}resources: [../x.yaml]\n`, "leaves the kustomization root");
    rejects(`${head}resources: [sub/../../x.yaml]\n`, "leaves the kustomization root");
    rejects(`${head}resources: [https://example.com/x.yaml]\n`, "leaves the kustomization root");
    rejects(`${head}resources: [missing.yaml]\n`, "does not exist");
    rejects(`${head}resources: [a.yaml, a.yaml]\n`, "defined twice");
    write("b.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n");
    rejects(`${head}resources: [b.yaml]\n`, "kind Widget is unknown");
    write("empty/x.txt", "");
    rejects(`${head}resources: [empty]\n`, "no kustomization.yaml");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
