// danmctl against the real apiserver, run as a process the way an operator runs it.
import { Effect, Layer, Schedule } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { customResourceDefinition } from "../../../core/api/crdgen.ts";
import {
  type ClusterNetwork,
  ClusterNetworkResource,
  type DanmEp,
  DanmEpResource,
  type DanmNet,
  DanmNetResource,
  LegacyDanmEpResource,
  LegacyDanmGroup,
  LegacyDanmNetResource,
} from "../../../core/api/danm.ts";
import { danmCrdDescriptions } from "../../../core/api/danm_crds.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { Ipam, ipamLayer, type Owner } from "../../../core/ipam/allocator.ts";
import { blockStoreFromKube } from "../../../core/ipam/kube.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { repoRoot } from "../../harness/proc.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { restClient } from "../api/rest.ts";

const cluster = await useCluster();
await installDanmCrds(cluster.kubeConfig);
const kubeLayer = layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Layer.orDie);
const run = <A, E>(p: Effect.Effect<A, E, Kube | Ipam>) =>
  Effect.runPromise(Effect.scoped(Effect.provide(
    p,
    Layer.merge(kubeLayer, ipamLayer().pipe(Layer.provide(blockStoreFromKube), Layer.provide(kubeLayer))),
  )));

async function danmctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/cmd/danmctl.ts`, ...args, "--kubeconfig", cluster.kubeconfigPath],
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("danmctl showalloc, status and leaks (--release) on a live network", async () => {
  const name = uniqueName("ctl");
  const podName = uniqueName("ctl-pod");
  const { net, pod } = await run(Effect.gen(function* () {
    const kube = yield* Kube;
    const net = yield* kube.create(ClusterNetworkResource, {
      metadata: { name },
      spec: { NetworkID: "ctl", NetworkType: "ipvlan", Options: { cidr: "10.50.0.0/24", net6: "2001:db8:50::/64" } },
    } as ClusterNetwork);
    const pod = yield* kube.create(PodResource, {
      metadata: { name: podName, namespace: "default" },
      spec: { nodeName: "n1", containers: [{ name: "c", image: "x" }] },
    });
    return { net, pod };
  }));
  const network = {
    ref: { kind: "ClusterNetwork" as const, name, uid: net.metadata.uid! },
    options: net.spec.Options!,
  };
  const live: Owner = {
    namespace: "default",
    pod: podName,
    podUid: pod.metadata.uid!,
    sandbox: "sb-live",
    iface: "eth1",
    node: "n1",
  };
  const gone: Owner = { ...live, pod: uniqueName("gone"), podUid: crypto.randomUUID(), sandbox: "sb-gone" };
  try {
    await run(Effect.gen(function* () {
      const ipam = yield* Ipam;
      const kube = yield* Kube;
      const got = yield* ipam.allocate(network, live, "dynamic", "dynamic");
      yield* ipam.allocate(network, gone, "10.50.0.77", undefined);
      yield* kube.create(DanmEpResource, {
        metadata: { name: uniqueName("ep"), namespace: "default" },
        spec: {
          NetworkName: name,
          apiType: "ClusterNetwork",
          EndpointID: "e",
          Pod: podName,
          PodUID: pod.metadata.uid,
          Interface: { Name: "eth1", Address: got.v4, AddressIPv6: got.v6 },
        },
      } as DanmEp);
    }));

    const show = await danmctl("showalloc", name, "-o", "json");
    assertEquals(show.code, 0, show.stderr);
    const s = JSON.parse(show.stdout);
    assertEquals(s.network, `ClusterNetwork ${name}`);
    // The owners as the IPAM got them (the IPBlock stores pod UIDs and sandbox IDs packed).
    type Row = { address: string; pod: string; podUid: string; sandbox: string };
    assertEquals(s.allocations.map((a: Row) => [a.address, a.pod, a.podUid, a.sandbox]), [
      ["10.50.0.1", `default/${podName}`, live.podUid, "sb-live"],
      ["10.50.0.77", `default/${gone.pod}`, gone.podUid, "sb-gone"],
      ["2001:db8:50::1", `default/${podName}`, live.podUid, "sb-live"],
    ]);
    assertEquals(
      s.pools.map((p: { family: number; used: number; capacity: string }) => [p.family, p.used, p.capacity]),
      [
        [4, 2, "254"],
        [6, 1, String((1n << 64n) - 2n)],
      ],
    );
    const table = await danmctl("showalloc", name);
    assert(table.stdout.includes("10.50.0.77") && table.stdout.includes("STATIC"), table.stdout);

    const st = await danmctl("status", "-o", "json");
    assertEquals(st.code, 0, st.stderr);
    const row = JSON.parse(st.stdout).find((r: { name: string }) => r.name === name);
    assertEquals(row.pools.map((p: { used: number }) => p.used), [2, 1]);

    const report = await danmctl("leaks", "-o", "json", "--grace", "0");
    assertEquals(report.code, 3, "leaks exits 3 when it finds problems");
    const leaked = JSON.parse(report.stdout).leakedReservations.filter((l: { network: string }) =>
      l.network.endsWith(name)
    );
    assertEquals(leaked.map((l: { address: string; reason: string }) => [l.address, l.reason]), [[
      "10.50.0.77",
      "pod gone",
    ]]);

    const refused = await danmctl("leaks", "--release", "--grace", "0");
    assertEquals(refused.code, 1, "no confirmation without a terminal or --yes");
    const released = await danmctl("leaks", "--release", "--yes", "--grace", "0");
    assertEquals(released.code, 0, released.stderr);
    assert(released.stdout.includes(gone.pod), released.stdout);
    const after = JSON.parse((await danmctl("showalloc", name, "-o", "json")).stdout);
    assertEquals(after.allocations.map((a: { address: string }) => a.address), ["10.50.0.1", "2001:db8:50::1"]);

    const missing = await danmctl("showalloc", uniqueName("nope"));
    assertEquals(missing.code, 1);
    assert(missing.stderr.includes("no ClusterNetwork of that name"), missing.stderr);
  } finally {
    await run(Effect.gen(function* () {
      const ipam = yield* Ipam;
      const kube = yield* Kube;
      yield* Effect.ignore(ipam.release(network, live));
      yield* Effect.ignore(ipam.release(network, gone));
      yield* Effect.ignore(kube.delete(PodResource, podName, { namespace: "default", gracePeriodSeconds: 0 }));
      yield* Effect.ignore(kube.delete(ClusterNetworkResource, name));
    }));
  }
});

/** DANM ≤ 4.3 served its kinds under danm.k8s.io: install those CRDs (same schemas, old group). */
async function installLegacyCrds() {
  const rest = restClient(cluster.kubeConfig);
  try {
    for (const d of danmCrdDescriptions.filter((d) => d.group === "danm.io" && d.kind !== "IPBlock")) {
      const crd = Effect.runSync(customResourceDefinition({ ...d, group: LegacyDanmGroup }));
      // *.k8s.io groups are protected: a CRD there must carry this annotation (KEP-1111), as DANM users' do.
      const annotated = {
        ...crd,
        metadata: { ...crd.metadata, annotations: { "api-approved.kubernetes.io": "unapproved, DANM's legacy group" } },
      };
      const r = await rest.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", annotated);
      assert(r.status === 201 || r.status === 409, JSON.stringify(r.body));
    }
    for (const plural of ["danmnets", "danmeps"]) {
      for (let i = 0; i < 100; i++) {
        const r = await rest.call("GET", `/apis/danm.k8s.io/v1/namespaces/default/${plural}`);
        if (r.status === 200) break;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  } finally {
    rest.close();
  }
}

Deno.test("danmctl migrate copies danm.k8s.io networks to danm.io without DANM's allocation state", async () => {
  await installLegacyCrds();
  const name = uniqueName("legacy");
  await run(Effect.gen(function* () {
    const kube = yield* Kube;
    yield* Effect.retry(
      kube.create(LegacyDanmNetResource, {
        metadata: { name, namespace: "default" },
        spec: {
          NetworkID: "legacy",
          NetworkType: "ipvlan",
          Options: {
            cidr: "10.51.0.0/24",
            alloc: "gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=",
            allocation_pool: { start: "10.51.0.1", end: "10.51.0.254", lastIp: "10.51.0.9/24" },
          },
        },
      } as DanmNet),
      { times: 20, while: (e) => e._tag === "KubeUnavailable" || e._tag === "KubeNotFound" },
    );
  }));
  try {
    const dry = await danmctl("migrate", "--dry-run", "-o", "json");
    assertEquals(dry.code, 0, dry.stderr);
    assert(
      JSON.parse(dry.stdout).some((e: { name: string; action: string }) =>
        e.name === name && e.action === "would create"
      ),
      dry.stdout,
    );
    const real = await danmctl("migrate", "-o", "json");
    assertEquals(real.code, 0, real.stderr);
    const migrated = await run(Effect.gen(function* () {
      return yield* (yield* Kube).get(DanmNetResource, name, { namespace: "default" });
    }));
    assertEquals(migrated.spec.Options?.cidr, "10.51.0.0/24");
    assertEquals(migrated.spec.Options?.alloc, undefined);
    assertEquals(migrated.spec.Options?.allocation_pool, { start: "10.51.0.1", end: "10.51.0.254" });
    const again = await danmctl("migrate", "-o", "json");
    assert(
      JSON.parse(again.stdout).some((e: { name: string; action: string }) => e.name === name && e.action === "exists"),
    );
  } finally {
    await run(Effect.gen(function* () {
      const kube = yield* Kube;
      yield* Effect.ignore(kube.delete(LegacyDanmNetResource, name, { namespace: "default" }));
      yield* Effect.ignore(kube.delete(DanmNetResource, name, { namespace: "default" }));
    }));
  }
});

Deno.test("danmctl migrate reserves the running pods' addresses for them; a gone pod's are free; a duplicate is reported", async () => {
  await installLegacyCrds();
  const net = uniqueName("mig"), flan = uniqueName("migfl");
  const pods = ["alive", "twin"].map((p) => uniqueName(p));
  const ghost = uniqueName("ghost");
  // The objects as DANM v4.3.0 left them: a network with its bitmask, DanmEps named by UUID without labels.
  const legacyEp = (pod: string, uid: string, network: string, iface: string, address: string, cid: string) => ({
    metadata: { name: crypto.randomUUID(), namespace: "default" },
    spec: {
      NetworkName: network,
      NetworkType: network === net ? "ipvlan" : "flannel",
      EndpointID: "x",
      Interface: { Name: iface, Address: address, AddressIPv6: "", proutes: null, proutes6: null },
      Host: "n1",
      Pod: pod,
      PodUID: uid,
      CID: cid,
      netns: `/var/run/netns/${cid}`,
      apiType: "DanmNet",
    },
  } as unknown as DanmEp);
  const uids = await run(Effect.gen(function* () {
    const kube = yield* Kube;
    const create = <A>(e: Effect.Effect<A, unknown>) =>
      Effect.retry(e, { times: 20, schedule: Schedule.spaced("100 millis") });
    yield* create(kube.create(LegacyDanmNetResource, {
      metadata: { name: net, namespace: "default" },
      spec: {
        NetworkID: "mig",
        NetworkType: "ipvlan",
        Options: {
          host_device: "ens4",
          cidr: "10.52.0.0/24",
          // A pool of four: every new allocation has to get past the migrated reservation.
          allocation_pool: { start: "10.52.0.1", end: "10.52.0.4", lastIp: "10.52.0.3/24" },
          alloc: "8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=",
        },
      },
    } as DanmNet));
    yield* create(kube.create(LegacyDanmNetResource, {
      metadata: { name: flan, namespace: "default" },
      spec: { NetworkID: "flannel", NetworkType: "flannel" },
    } as DanmNet));
    const uids: string[] = [];
    for (const name of pods) {
      const p = yield* kube.create(PodResource, {
        metadata: { name, namespace: "default" },
        spec: { nodeName: "n1", containers: [{ name: "c", image: "x" }] },
      });
      uids.push(p.metadata.uid ?? "");
    }
    for (
      const ep of [
        legacyEp(pods[0], uids[0], net, "eth0", "10.52.0.2/24", "cid-alive"),
        legacyEp(pods[0], uids[0], flan, "eth1", "10.244.3.7/24", "cid-alive"),
        legacyEp(ghost, "u-ghost", net, "eth0", "10.52.0.3/24", "cid-ghost"),
        // DANM handed .2 out twice (a bitmask overwritten by a stale `kubectl apply`, #144): reported, not guessed.
        legacyEp(pods[1], uids[1], net, "eth0", "10.52.0.2/24", "cid-twin"),
      ]
    ) yield* create(kube.create(LegacyDanmEpResource, ep));
    return uids;
  }));
  const owner = (i: number, sandbox: string, iface = "eth0"): Owner => ({
    namespace: "default",
    pod: pods[i] ?? "new",
    podUid: uids[i] ?? `new-${sandbox}`,
    sandbox,
    iface,
    node: "n1",
  });
  const migrated = (e: { kind: string; name: string }) =>
    (e.kind === "Reservation" && pods.some((p) => e.name.startsWith(`default/${p} `))) ||
    [net, flan].includes(e.name) || (e.kind === "DanmEp");
  try {
    const dry = await danmctl("migrate", "--dry-run", "-o", "json");
    assertEquals(dry.code, 0, dry.stderr);
    const dryRows = (JSON.parse(dry.stdout) as Array<{ kind: string; name: string; action: string }>)
      .filter((e) => e.kind === "Reservation" && e.name.includes(pods[0]));
    assertEquals(dryRows.map((e) => e.action).sort(), ["skipped", "would reserve"]);

    const real = await danmctl("migrate", "-o", "json");
    assertEquals(real.code, 3, `a duplicate makes the migration incomplete: ${real.stdout} ${real.stderr}`);
    const rows = (JSON.parse(real.stdout) as Array<{ kind: string; name: string; action: string; note?: string }>)
      .filter(migrated).map((e) => `${e.kind} ${e.name.replace(/^default\//, "")} ${e.action}`).sort();
    assertEquals(
      rows.filter((r) => r.startsWith("Reservation")),
      [
        `Reservation ${pods[0]} eth0 10.52.0.2 reserved`,
        `Reservation ${pods[0]} eth1 10.244.3.7 skipped`,
        `Reservation ${pods[1]} eth0 10.52.0.2 not reserved`,
      ].sort(),
    );
    const twinNote = (JSON.parse(real.stdout) as Array<{ name: string; note?: string }>)
      .find((e) => e.name.startsWith(`default/${pods[1]} `))?.note ?? "";
    assert(/10\.52\.0\.2 is already in use by default\/alive/.test(twinNote), twinNote);

    await run(Effect.gen(function* () {
      const kube = yield* Kube;
      const ipam = yield* Ipam;
      // The running pods' DanmEps are danm's now, with the labels its node agent selects by; the ghost's are not.
      const eps = (yield* kube.list(DanmEpResource, { namespace: "default" })).items
        .filter((e) => [...pods, ghost].includes(e.spec.Pod));
      assertEquals(
        eps.map((e) => `${e.spec.Pod} ${e.spec.Interface.Name}`).sort(),
        [
          `${pods[0]} eth0`,
          `${pods[0]} eth1`,
          `${pods[1]} eth0`,
        ].sort(),
      );
      for (const e of eps) {
        assertEquals(e.metadata.labels?.["cni.danm.io/node"], "n1");
        assertEquals(e.metadata.labels?.["cni.danm.io/pod-uid"], e.spec.PodUID);
      }
      // New pods on the migrated network never get .2; the ghost's .3 is free again; then the pool is full.
      const n = yield* kube.get(DanmNetResource, net, { namespace: "default" });
      const network = {
        ref: { kind: "DanmNet" as const, namespace: "default", name: net, uid: n.metadata.uid ?? "" },
        options: n.spec.Options ?? {},
      };
      const got: string[] = [];
      for (const sb of ["s1", "s2", "s3"]) {
        got.push((yield* ipam.allocate(network, owner(9, sb), "dynamic", undefined)).v4!);
      }
      assertEquals(got.sort(), ["10.52.0.1/24", "10.52.0.3/24", "10.52.0.4/24"]);
      const full = yield* Effect.flip(ipam.allocate(network, owner(9, "s4"), "dynamic", undefined));
      assertEquals(full._tag, "PoolExhausted");
      // A DEL of the migrated pod (owner: pod UID + interface + sandbox, as DANM's DanmEp records them) frees
      // exactly its address.
      assertEquals(yield* ipam.release(network, owner(0, "cid-alive")), 1);
      assertEquals((yield* ipam.allocate(network, owner(9, "s4"), "dynamic", undefined)).v4, "10.52.0.2/24");
      for (const sb of ["s1", "s2", "s3", "s4"]) yield* ipam.release(network, owner(9, sb));
    }));
  } finally {
    await run(Effect.gen(function* () {
      const kube = yield* Kube;
      for (const name of [...pods]) {
        yield* Effect.ignore(kube.delete(PodResource, name, { namespace: "default", gracePeriodSeconds: 0 }));
      }
      for (const rt of [LegacyDanmEpResource, DanmEpResource]) {
        const items = (yield* Effect.orElseSucceed(kube.list(rt, { namespace: "default" }), () => ({ items: [] })))
          .items.filter((e) => [...pods, ghost].includes(e.spec.Pod));
        for (const e of items) yield* Effect.ignore(kube.delete(rt, e.metadata.name ?? "", { namespace: "default" }));
      }
      for (const name of [net, flan]) {
        yield* Effect.ignore(kube.delete(LegacyDanmNetResource, name, { namespace: "default" }));
        yield* Effect.ignore(kube.delete(DanmNetResource, name, { namespace: "default" }));
      }
    }));
  }
});

globalThis.addEventListener("unload", () => {
  cluster.release();
});

Deno.test("danmctl dry-run predicts interfaces, addresses and routes without changing anything", async () => {
  const name = uniqueName("dry");
  const net = await run(Effect.gen(function* () {
    return yield* (yield* Kube).create(ClusterNetworkResource, {
      metadata: { name },
      spec: {
        NetworkID: "dry",
        NetworkType: "ipvlan",
        Options: {
          host_device: "ens4",
          container_prefix: "ext",
          rt_tables: 20,
          cidr: "10.52.0.0/24",
          routes: { "10.99.0.0/16": "10.52.0.254" },
        },
      },
    } as ClusterNetwork);
  }));
  const network = {
    ref: { kind: "ClusterNetwork" as const, name, uid: net.metadata.uid! },
    options: net.spec.Options!,
  };
  const holder: Owner = {
    namespace: "default",
    pod: "holder",
    podUid: crypto.randomUUID(),
    sandbox: "sb-h",
    iface: "eth0",
    node: "n1",
  };
  const dir = await Deno.makeTempDir();
  try {
    await run(Effect.gen(function* () {
      yield* (yield* Ipam).allocate(network, holder, "dynamic", undefined); // takes 10.52.0.1
    }));
    await Deno.writeTextFile(
      `${dir}/pod.yaml`,
      `apiVersion: v1
kind: Pod
metadata:
  name: nf
  namespace: default
  annotations:
    danm.io/interfaces: |
      [{"clusterNetwork": "${name}", "ip": "dynamic", "proutes": {"10.200.0.0/16": "10.52.0.254"}},
       {"clusterNetwork": "${name}", "ip": "dynamic"},
       {"clusterNetwork": "${name}", "ip": "10.52.0.1"}]
spec:
  containers: [{name: c, image: x}]
`,
    );
    const out = await danmctl("dry-run", `${dir}/pod.yaml`, "-o", "json");
    assertEquals(out.code, 0, out.stderr);
    const d = JSON.parse(out.stdout);
    assertEquals(
      d.interfaces.map((i: { name: string; addresses: string[]; parent?: string }) => [i.name, i.addresses, i.parent]),
      [
        ["eth0", ["10.52.0.2/24"], "ens4"],
        ["ext1", ["10.52.0.3/24"], "ens4"],
        ["ext2", [], "ens4"],
      ],
    );
    assertEquals(d.interfaces[0].routes, ["10.99.0.0/16 via 10.52.0.254", "10.200.0.0/16 via 10.52.0.254 table 20"]);
    assert(d.interfaces[2].notes.some((n: string) => n.includes("in use by default/holder")), JSON.stringify(d));
    // Nothing was reserved or recorded.
    const after = JSON.parse((await danmctl("showalloc", name, "-o", "json")).stdout);
    assertEquals(after.allocations.map((a: { address: string }) => a.address), ["10.52.0.1"]);
    const missing = await danmctl("dry-run", `${dir}/nope.yaml`);
    assertEquals(missing.code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await run(Effect.gen(function* () {
      yield* Effect.ignore((yield* Ipam).release(network, holder));
      yield* Effect.ignore((yield* Kube).delete(ClusterNetworkResource, name));
    }));
  }
});
