// The webhook registered over TLS with the real apiserver: every single-object rule (one refused and one admitted
// case each, with the message or the mutation as stored), UPDATE and DELETE rules, dry-run, and pod admission.
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { uniqueName } from "../../harness/cluster.ts";
import { networkCases, tenantConfigCases } from "../../unit/webhook/cases.ts";
import { pick } from "../api/rest.ts";
import { eventually } from "../../harness/eventually.ts";
import { type Json, type Kind, messageOf, startTestWebhook, type TestWebhook } from "./support.ts";

let shared: Promise<TestWebhook> | undefined;
const webhook = () => (shared ??= startTestWebhook());
// The webhook outlives single tests (its server and caches are shared by the file); the last test closes it.
const opts = { sanitizeOps: false, sanitizeResources: false };

const subject = (kind: string, name: string, ns = "default") =>
  `${kind} ${kind === "ClusterNetwork" || kind === "TenantConfig" ? "" : `${ns}/`}${name}: `;

for (const c of [...networkCases, ...tenantConfigCases].filter((c) => !c.unitOnly)) {
  Deno.test({
    name: `webhook rule ${c.rule}: ${c.kind}: ${c.title}`,
    ...opts,
    fn: async () => {
      const w = await webhook();
      const name = uniqueName(c.rule.replace(/_/g, "-").toLowerCase().slice(0, 30));
      const r = await w.create(c.kind, { metadata: { name }, ...c.body });
      if ("denied" in c.expect) {
        if (r.status === 201) return fail(`admitted, expected ${c.expect.denied}`);
        assertEquals(r.status, 403, messageOf(r));
        const m = messageOf(r);
        assertMatch(m, /^admission webhook "[a-z0-9.]+\.danm\.io" denied the request: /);
        assert(m.includes(subject(c.kind, name)), `the message names the object: ${m}`);
        assertMatch(m, c.expect.denied);
        const causes = (pick(r.body, "details", "causes") ?? []) as Array<{ reason?: string }>;
        assert(causes.some((k) => k.reason === c.rule), `a cause names rule ${c.rule}: ${JSON.stringify(causes)}`);
      } else {
        if (r.status !== 201) return fail(`refused: ${messageOf(r)}`);
        c.expect.allowed(
          await w.get(c.kind, c.kind === "ClusterNetwork" || c.kind === "TenantConfig" ? name : `default/${name}`),
        );
      }
    },
  });
}

Deno.test({
  name: "webhook: unknown fields never reach the webhook: the apiserver refuses (Strict) or prunes them first",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("strict");
    const strict = await w.create(
      "DanmNet",
      { metadata: { name }, spec: { NetworkID: "n", Options: { foo: 1 } } },
      "?fieldValidation=Strict",
    );
    assertEquals(strict.status, 400);
    assertMatch(messageOf(strict), /unknown field "spec\.Options\.foo"/);
  },
});

const network = (name: string, spec: Json) => ({ metadata: { name }, spec });

const put = async (w: TestWebhook, kind: Kind, name: string, change: (o: Json) => void) => {
  const obj = await w.get(kind, kind === "ClusterNetwork" ? name : `default/${name}`);
  change(obj);
  const path = kind === "ClusterNetwork"
    ? `/apis/danm.io/v1/clusternetworks/${name}`
    : `/apis/danm.io/v1/namespaces/default/${kind.toLowerCase()}s/${name}`;
  return await w.rest.call("PUT", path, obj);
};

const spec = (o: Json) => o.spec as Json;
const options = (o: Json) => spec(o).Options as Json;

const danmEp = (name: string, network: string, pod: string, apiType: string) => ({
  metadata: { name },
  spec: { NetworkName: network, EndpointID: name, Interface: { Name: "eth1" }, Pod: pod, apiType },
});

Deno.test({
  name: "webhook UPDATE: VLAN and host_device are fixed while a pod is attached; other edits pass; rules still apply",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("upd");
    await w.mustCreate(
      "DanmNet",
      network(name, { NetworkID: "upd", Options: { host_device: "ens4", vlan: 500 } }),
    );
    const epName = uniqueName("ep");
    const pod = uniqueName("p1");
    await w.mustCreate("DanmEp", danmEp(epName, name, pod, "DanmNet"));
    await eventually(
      "the DanmEp in the webhook's index",
      async () => (await w.run(w.running.view.attachedPods("DanmNet", "default", name))).length === 1,
    );
    const vlan = await put(w, "DanmNet", name, (o) => (options(o).vlan = 501));
    assertEquals(vlan.status, 403);
    assertMatch(
      messageOf(vlan),
      new RegExp(
        `DanmNet default/${name}: spec\\.Options\\.vlan: must not change while pods are attached \\(pod default/${pod}\\)`,
      ),
    );
    const dev = await put(w, "DanmNet", name, (o) => (options(o).host_device = "ens5"));
    assertMatch(messageOf(dev), /spec\.Options\.host_device: must not change while pods are attached/);
    const both = await put(w, "DanmNet", name, (o) => (options(o).vxlan = 7));
    assertMatch(messageOf(both), /spec\.Options\.vxlan: vlan and vxlan are mutually exclusive/);
    const mtu = await put(w, "DanmNet", name, (o) => (options(o).mtu = 9000));
    assertEquals(mtu.status, 200, messageOf(mtu));
    await w.remove("DanmEp", epName);
    await eventually(
      "the DanmEp gone from the index",
      async () => (await w.run(w.running.view.attachedPods("DanmNet", "default", name))).length === 0,
    );
    const free = await put(w, "DanmNet", name, (o) => (options(o).vlan = 501));
    assertEquals(free.status, 200, messageOf(free));
    assertEquals(options(free.body as Json).vlan, 501);
  },
});

Deno.test({
  name: "webhook UPDATE: a cidr change that would strand an IPBlock reservation is refused; growing it is not",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("addr");
    const net = await w.mustCreate(
      "DanmNet",
      network(name, { NetworkID: "a", Options: { cidr: "10.77.0.0/24" } }),
    );
    const uid = String(pick(net, "metadata", "uid"));
    const block = `${uid}-4-0`;
    const ipb = await w.rest.call("POST", "/apis/danm.io/v1/ipblocks", {
      apiVersion: "danm.io/v1",
      kind: "IPBlock",
      metadata: { name: block, labels: { "danm.io/network-uid": uid } },
      spec: {
        network: { kind: "DanmNet", namespace: "default", name, uid },
        family: "IPv4",
        cidr: "10.77.0.0/26",
        // The stored form of a block's reservations: a line `<offset> <reservation>` each (core/api/ipam.ts).
        reservations: `9 default/web-0 uid=u sandbox=s iface=eth1 node=n since=${new Date().toISOString()}`,
      },
    });
    assertEquals(ipb.status, 201, messageOf(ipb));
    try {
      const moved = await put(w, "DanmNet", name, (o) => {
        options(o).cidr = "10.78.0.0/24";
        delete options(o).allocation_pool;
      });
      assertEquals(moved.status, 403);
      assertMatch(
        messageOf(moved),
        /spec\.Options\.cidr: 10\.78\.0\.0\/24 would strand the reservation of 10\.77\.0\.9 \(pod default\/web-0, interface eth1\)/,
      );
      // kubectl-apply style: the pool the webhook defaulted is sent back unchanged and follows the new cidr.
      const grown = await put(w, "DanmNet", name, (o) => (options(o).cidr = "10.77.0.0/23"));
      assertEquals(grown.status, 200, messageOf(grown));
      assertEquals(options(grown.body as Json).allocation_pool, { start: "10.77.0.1", end: "10.77.1.254" });
    } finally {
      await w.rest.call("DELETE", `/apis/danm.io/v1/ipblocks/${block}`);
    }
  },
});

Deno.test({
  name: "webhook DELETE: refused while a pod is attached, naming it; dry-run honoured; allowed afterwards",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("del");
    await w.mustCreate("ClusterNetwork", network(name, { NetworkID: "d" }));
    const epName = uniqueName("ep");
    await w.mustCreate("DanmEp", {
      ...danmEp(epName, name, "db-0", "ClusterNetwork"),
      metadata: { name: epName, namespace: "kube-public" },
    });
    await eventually(
      "the DanmEp in the webhook's index",
      async () => (await w.run(w.running.view.attachedPods("ClusterNetwork", undefined, name))).length === 1,
    );
    for (const query of ["", "?dryRun=All"]) {
      const r = await w.remove("ClusterNetwork", name, query);
      assertEquals(r.status, 403);
      assertMatch(
        messageOf(r),
        new RegExp(`ClusterNetwork ${name}: cannot be deleted while pods are attached \\(pod kube-public/db-0\\)`),
      );
    }
    await w.remove("DanmEp", `kube-public/${epName}`);
    await eventually(
      "the DanmEp gone",
      async () => (await w.run(w.running.view.attachedPods("ClusterNetwork", undefined, name))).length === 0,
    );
    const dry = await w.remove("ClusterNetwork", name, "?dryRun=All");
    assertEquals(dry.status, 200, messageOf(dry));
    assertEquals(
      (await w.rest.call("GET", `/apis/danm.io/v1/clusternetworks/${name}`)).status,
      200,
      "dry-run deleted nothing",
    );
    const gone = await w.remove("ClusterNetwork", name);
    assertEquals(gone.status, 200, messageOf(gone));
  },
});

Deno.test({
  name: "webhook dry-run: a server-side dry-run CREATE is admitted and mutated, and nothing is stored",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("dry");
    const r = await w.create(
      "DanmNet",
      network(name, { NetworkID: "d", Options: { cidr: "10.66.0.0/24" } }),
      "?dryRun=All",
    );
    assertEquals(r.status, 201, messageOf(r));
    assertEquals(spec(r.body as Json).NetworkType, "ipvlan");
    assertEquals(options(r.body as Json).allocation_pool, { start: "10.66.0.1", end: "10.66.0.254" });
    assertEquals((await w.rest.call("GET", `/apis/danm.io/v1/namespaces/default/danmnets/${name}`)).status, 404);
  },
});

// ---- Pods ------------------------------------------------------------------------------------------------------

const pod = (name: string, annotations?: Record<string, string>, extra: Json = {}) => ({
  metadata: { name, ...(annotations ? { annotations } : {}) },
  spec: { containers: [{ name: "c", image: "busybox" }], ...extra },
});

Deno.test({
  name: "webhook pods: the selection is validated with precise messages; valid pods are admitted",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const net = uniqueName("podnet");
    await w.mustCreate(
      "DanmNet",
      network(net, {
        NetworkID: "pn",
        Options: { cidr: "10.88.0.0/24", routes: { "10.99.0.0/16": "10.88.0.1" }, container_prefix: "int" },
      }),
    );
    const cn = uniqueName("podcn");
    await w.mustCreate(
      "ClusterNetwork",
      network(cn, { NetworkID: "c", AllowedTenants: ["kube-public"] }),
    );
    const ok = await w.create(
      "Pod",
      pod(uniqueName("ok"), { "danm.io/interfaces": JSON.stringify([{ network: net, ip: "10.88.0.7" }]) }),
    );
    assertEquals(ok.status, 201, messageOf(ok));
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ "danm.io/interfaces": "[{" }, /metadata\.annotations\["danm\.io\/interfaces"\]: not valid JSON/],
      [
        { "danm.io/interfaces": JSON.stringify([{ network: net, clusterNetwork: cn }]) },
        /\[0\]\.clusterNetwork: exactly one of "network", "tenantNetwork", "clusterNetwork" must be set/,
      ],
      [
        { "danm.io/interfaces": JSON.stringify([{ network: "missing-net" }]) },
        /\[0\]\.network: DanmNet default\/missing-net does not exist/,
      ],
      [
        { "danm.io/interfaces": JSON.stringify([{ clusterNetwork: cn }]) },
        new RegExp(`namespace default is not in the AllowedTenants of ClusterNetwork ${cn} \\(kube-public\\)`),
      ],
      [
        { "danm.io/interfaces": JSON.stringify([{ network: net, ip: "10.89.0.7" }]) },
        new RegExp(`\\[0\\]\\.ip: 10\\.89\\.0\\.7 is not inside cidr 10\\.88\\.0\\.0/24 of DanmNet default/${net}`),
      ],
      [
        { "danm.io/interfaces": JSON.stringify([{ network: net, ip: "10.88.0.1" }]) },
        /10\.88\.0\.1 is reserved on DanmNet default\/[a-z0-9-]+ \(network, broadcast or route gateway address\)/,
      ],
      [
        { "k8s.v1.cni.cncf.io/networks": `${net}, nowhere` },
        /networks"\]\[1\]\.name: no NetworkAttachmentDefinition default\/nowhere, DanmNet, TenantNetwork or ClusterNetwork named "nowhere" exists/,
      ],
    ];
    for (const [annotations, re] of cases) {
      const name = uniqueName("bad");
      const r = await w.create("Pod", pod(name, annotations));
      if (r.status === 201) fail(`pod with ${JSON.stringify(annotations)} admitted, expected ${re}`);
      assertEquals(r.status, 403, messageOf(r));
      assertMatch(
        messageOf(r),
        new RegExp(`admission webhook "pods\\.validate\\.danm\\.io" denied the request: Pod default/${name}: `),
      );
      assertMatch(messageOf(r), re);
    }
  },
});

Deno.test({
  name: "webhook pods: a flannel network without a cidr takes ip: dynamic (its own IPAM answers); a macvlan one does " +
    "not; references to another namespace are refused as namespace-local",
  ...opts,
  fn: async () => {
    const w = await webhook();
    // DANM's 6_static_tnet.yaml as a DanmNet, and 10_good_deployment.yaml's request for it.
    const flannel = uniqueName("management");
    await w.mustCreate("DanmNet", network(flannel, { NetworkID: "flannel", NetworkType: "flannel" }));
    const mv = uniqueName("l2mv");
    await w.mustCreate(
      "DanmNet",
      network(mv, { NetworkID: "mv", NetworkType: "macvlan", Options: { host_device: "e" } }),
    );
    for (const entry of [{ ip: "dynamic" }, { ip: "dynamic", ip6: "dynamic" }, { ip: "10.1.2.3" }, { ip: "none" }]) {
      const r = await w.create(
        "Pod",
        pod(uniqueName("flannel"), {
          "danm.k8s.io/interfaces": JSON.stringify([{ network: flannel, ...entry }, { network: mv, ip: "none" }]),
        }),
      );
      assertEquals(r.status, 201, `${JSON.stringify(entry)}: ${messageOf(r)}`);
    }
    const cases: Array<[Json, RegExp]> = [
      [{ network: mv, ip: "dynamic" }, new RegExp(`\\[0\\]\\.ip: DanmNet default/${mv} has no cidr: no IPv4 address`)],
      [
        { network: `kube-public/${flannel}` },
        new RegExp(
          `\\[0\\]\\.network: "kube-public/${flannel}" is in namespace kube-public: DanmNet references are ` +
            `namespace-local`,
        ),
      ],
    ];
    for (const [entry, re] of cases) {
      const r = await w.create("Pod", pod(uniqueName("bad"), { "danm.io/interfaces": JSON.stringify([entry]) }));
      assertEquals(r.status, 403, `${JSON.stringify(entry)} admitted`);
      assertMatch(messageOf(r), re);
    }
  },
});

Deno.test({
  name: "webhook pods: interface names longer than 15 bytes are refused",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const net = uniqueName("wide");
    await w.mustCreate(
      "DanmNet",
      network(net, { NetworkID: "w", Options: { container_prefix: "abcdefghijklmn" } }),
    );
    const name = uniqueName("long");
    const r = await w.create(
      "Pod",
      pod(name, { "danm.io/interfaces": JSON.stringify(Array.from({ length: 11 }, () => ({ network: net }))) }),
    );
    assertEquals(r.status, 403);
    assertMatch(
      messageOf(r),
      /\[10\]: interface name: "abcdefghijklmn10" is 16 bytes long; Linux interface names have at most 15/,
    );
    const nine = await w.create(
      "Pod",
      pod(uniqueName("fits"), {
        "danm.io/interfaces": JSON.stringify(Array.from({ length: 10 }, () => ({ network: net }))),
      }),
    );
    assertEquals(nine.status, 201, messageOf(nine));
  },
});

Deno.test({
  name: "webhook pods: pods without danm/NPWG annotations and hostNetwork pods are never sent to the webhook",
  ...opts,
  fn: async () => {
    const w = await webhook();
    // No default network exists for "default" here: were these pods sent, they would be refused.
    const plain = await w.create("Pod", pod(uniqueName("plain")));
    assertEquals(plain.status, 201, messageOf(plain));
    const host = await w.create(
      "Pod",
      pod(uniqueName("host"), { "danm.io/interfaces": "not json" }, { hostNetwork: true }),
    );
    assertEquals(host.status, 201, messageOf(host));
    const sent = await w.create("Pod", pod(uniqueName("sent"), { "danm.io/interfaces": "not json" }));
    assertEquals(sent.status, 403);
  },
});

Deno.test({
  name: "webhook: metrics count the decisions; the last test unregisters and stops the webhook",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const text = w.running.metrics.render();
    assertMatch(
      text,
      /danm_webhook_admission_requests_total\{endpoint="validate",kind="Pod",operation="CREATE",result="denied"\} \d+/,
    );
    assertMatch(
      text,
      /danm_webhook_admission_requests_total\{endpoint="mutate",kind="DanmNet",operation="CREATE",result="allowed"\} \d+/,
    );
    await w.close();
    shared = undefined;
  },
});
