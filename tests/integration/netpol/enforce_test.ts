// MultiNetworkPolicy enforced on the real thing: the real node agent process (cmd/netwatcher.ts: policy controller +
// CNI daemon) on the real apiserver, pods set up by a fake kubelet through the thin `danm` client in real network
// namespaces, on a macvlan and a bridge network (danm IPAM, IPv4 and IPv6), checked with real TCP and UDP connections
// between the pods' namespaces. Default deny in the namespace, one allow rule each way: allowed flows pass, the rest
// is dropped, both directions, both families; label and policy changes reach the kernel within a measured bound; the
// interface on a network no policy is for (eth0) is never filtered; a SIGKILLed agent leaves enforcement in place
// and, restarted, reprograms a table tampered with while it was down. Pods with only NAD attachments (no DanmEp) are
// followed after their ADD and across a restart (the agent reads the CNI daemon's sandbox records); a pod's primary
// interface (eth0) stays open even when a policy names its network.
import { Effect, Exit, Scope } from "effect";
import { DanmEpResource, DanmNetResource } from "../../../core/api/danm.ts";
import { NamespaceResource, NetworkAttachmentDefinitionResource, PodResource } from "../../../core/api/k8s.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { type MultiNetworkPolicy, MultiNetworkPolicyResource, PolicyForAnnotation } from "../../../core/api/netpol.ts";
import type { KubeService } from "../../../core/ports/kube.ts";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import { type NodeAgent, startNodeAgent } from "../../harness/agent.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";
import { makeCniBin } from "../../harness/cnibin.ts";
import { useCluster } from "../../harness/cluster.ts";
import { Fakelet } from "../../harness/fakelet.ts";
import { run } from "../../harness/proc.ts";
import { netprobeServer, probeFrom } from "../../harness/netprobe.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { ensureCrd, nadCrd } from "../kube/crds.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The bound asserted on every change reaching the kernel; the measured times are printed (typically far below). */
const boundMs = 10_000;

interface PodInfo {
  readonly name: string;
  readonly netnsName: string;
  /** Network name → [v4, v6] on it. */
  readonly addrs: Record<string, [string, string]>;
  /** performance.now() when its ADD answered. */
  readonly addedAt: number;
}

async function setup() {
  const cluster = await useCluster();
  await installDanmCrds(cluster.kubeConfig);
  const r = crypto.randomUUID().slice(0, 6);
  const ns = `netpolnode-${r}`, node = `netpolnode-${r}`;
  const tmp = await Deno.makeTempDir({ prefix: `netpolnode-${r}-` });
  const scope = Scope.makeUnsafe();
  const kube: KubeService = await Effect.runPromise(
    makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Scope.provide(scope)),
  );
  const k = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
  let agent: NodeAgent | undefined;
  const startAgent = async () => {
    agent = await startNodeAgent({
      kubeconfig: cluster.kubeconfigPath,
      nodeName: node,
      dir: `${tmp}/agent`,
      logFile: `${tmp}/agent.log`,
      args: ["--netpol-resync-period", "2s", "--log-level", "debug"],
    });
    return agent;
  };
  await startAgent();
  const bin = await makeCniBin({ socket: agent!.socket, referencePlugins: true });
  await Deno.mkdir(`${tmp}/net.d`);
  const fakelet = new Fakelet({
    nodeName: node,
    kube,
    binDir: bin.dir,
    netconf: { cniVersion: "1.1.0", name: "danm_meta_cni", type: "danm", cniDir: `${tmp}/net.d` },
  });
  // A parent NIC with carrier for macvlan, bridges for the bridge networks: links of this tier's private netns.
  await run(["ip", "link", "add", `npm${r}`, "type", "veth", "peer", "name", `npq${r}`]);
  for (const l of [`npm${r}`, `npq${r}`]) await run(["ip", "link", "set", l, "up"]);
  for (const [id, bridge] of [[`npb${r}`, `cnb${r}`], [`npe${r}`, `cne${r}`]]) {
    await Deno.writeTextFile(
      `${tmp}/net.d/${id}.conf`,
      JSON.stringify({
        cniVersion: "1.0.0",
        name: id,
        type: "bridge",
        bridge,
        ipam: { type: "host-local", ranges: [[{ subnet: "10.99.99.0/24" }]] },
      }),
    );
  }
  await k(kube.create(NamespaceResource, { metadata: { name: ns } }));
  const net = (name: string, spec: Record<string, unknown>) =>
    k(kube.create(DanmNetResource, { metadata: { name, namespace: ns }, spec: spec as never }));
  await net("prim", { NetworkID: `npe${r}`, NetworkType: "bridge", Options: { cidr: "10.241.0.0/24" } });
  await net("mv", {
    NetworkID: `npm${r}`,
    NetworkType: "macvlan",
    Options: { host_device: `npm${r}`, cidr: "10.241.1.0/24", net6: "fd00:241:1::/64" },
  });
  await net("br", {
    NetworkID: `npb${r}`,
    NetworkType: "bridge",
    Options: { container_prefix: "br", cidr: "10.241.2.0/24", net6: "fd00:241:2::/64" },
  });
  // Ready when the daemon's STATUS says so, as a runtime checks.
  for (let i = 0;; i++) {
    const [st] = await fakelet.status();
    if (st.code === 0) break;
    if (i > 300) fail(`the agent did not become ready: ${st.stdout}\n${await Deno.readTextFile(`${tmp}/agent.log`)}`);
    await sleep(100);
  }

  const pods: PodInfo[] = [];
  const danmInterfaces = {
    "danm.io/interfaces": JSON.stringify([
      { network: "prim", ip: "dynamic" },
      { network: "mv", ip: "dynamic", ip6: "dynamic" },
      { network: "br", ip: "dynamic", ip6: "dynamic" },
    ]),
  };
  const createPod = async (
    name: string,
    labels: Record<string, string>,
    annotations: Record<string, string> = danmInterfaces,
  ): Promise<PodInfo> => {
    await k(kube.create(PodResource, {
      metadata: { name, namespace: ns, labels, annotations },
      spec: { nodeName: node, containers: [{ name: "c", image: "pause" }] },
    }));
    const sb = await fakelet.runPod(ns, name);
    const addedAt = performance.now();
    const eps = (await k(kube.list(DanmEpResource, { namespace: ns }))).items.filter((e) => e.spec.Pod === name);
    const addrs: Record<string, [string, string]> = {};
    for (const e of eps) {
      const plain = (a?: string) => (a ?? "").split("/")[0];
      addrs[e.spec.NetworkName] = [plain(e.spec.Interface.Address), plain(e.spec.Interface.AddressIPv6)];
    }
    // IPv6 addresses are usable once duplicate address detection is done.
    for (let i = 0; (await run(["ip", "-n", sb.netnsName, "-6", "addr", "show", "tentative"])).trim() !== ""; i++) {
      if (i > 100) fail(`${name}: IPv6 addresses stay tentative`);
      await sleep(50);
    }
    const info = { name, netnsName: sb.netnsName, addrs, addedAt };
    pods.push(info);
    return info;
  };

  const dispose = async () => {
    await agent?.dispose();
    for (const p of pods) await fakelet.stopPod(ns, p.name).catch(() => {});
    await fakelet.dispose().catch(() => {});
    // No controller-manager here to empty a deleted namespace: its objects go one by one.
    for (const p of pods) {
      await k(Effect.ignore(kube.delete(PodResource, p.name, { namespace: ns, gracePeriodSeconds: 0 })));
    }
    for (
      const pol of (await k(
        Effect.orElseSucceed(kube.list(MultiNetworkPolicyResource, { namespace: ns }), () => ({ items: [] })),
      )).items
    ) {
      await k(Effect.ignore(kube.delete(MultiNetworkPolicyResource, pol.metadata.name ?? "", { namespace: ns })));
    }
    for (const n of ["prim", "mv", "br"]) await k(Effect.ignore(kube.delete(DanmNetResource, n, { namespace: ns })));
    for (const n of [`nadp-${r}`, `nadb-${r}`]) {
      await k(Effect.ignore(kube.delete(NetworkAttachmentDefinitionResource, n, { namespace: ns })));
    }
    await k(Effect.ignore(kube.delete(NamespaceResource, ns)));
    await Effect.runPromise(Scope.close(scope, Exit.void));
    await bin.dispose();
    for (const l of [`npm${r}`, `cnb${r}`, `cne${r}`, `cnp${r}`, `cnq${r}`]) {
      await run(["ip", "link", "del", l]).catch(() => {});
    }
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await cluster.release();
  };
  return { r, ns, kube, k, fakelet, createPod, startAgent, agent: () => agent!, tmp, dispose };
}

const policy = (ns: string, name: string, spec: MultiNetworkPolicy["spec"]): MultiNetworkPolicy => ({
  metadata: { name, namespace: ns, annotations: { [PolicyForAnnotation]: "mv, br" } },
  ...(spec ? { spec } : {}),
});
const ports = [{ protocol: "TCP" as const, port: 7001 }, { protocol: "UDP" as const, port: 7002 }];

/** Every flow from `from` to `to` on the policed networks (both families, allowed and other ports). */
const flows = (to: PodInfo) =>
  ["mv", "br"].flatMap((n) =>
    to.addrs[n].flatMap((a) => [`tcp:${a}:7001`, `udp:${a}:7002`, `tcp:${a}:7003`, `udp:${a}:7003`])
  );
/** What a from→to probe should see: `allowed` = the allow rule applies (ports 7001/7002 only). */
const expect = (to: PodInfo, allowed: boolean) =>
  Object.fromEntries(flows(to).map((t) => [t, allowed && /:700[12]$/.test(t)]));

/** The pod's danm_netpol table as nft lists it ("" when there is none). */
const listing = (p: PodInfo) =>
  run(["ip", "netns", "exec", p.netnsName, "nft", "list", "table", "inet", "danm_netpol"]).catch(() => "");

/** Polls `nft list table` in the pod's netns until `pred` holds; the time it took, in ms. */
async function kernelTable(netnsName: string, pred: (listing: string | undefined) => boolean): Promise<number> {
  const started = performance.now();
  for (;;) {
    const listing = await run(["ip", "netns", "exec", netnsName, "nft", "list", "table", "inet", "danm_netpol"])
      .catch(() => undefined);
    if (pred(listing)) return performance.now() - started;
    if (performance.now() - started > boundMs) {
      fail(`the table in ${netnsName} did not change within ${boundMs} ms; it is:\n${listing ?? "(none)"}`);
    }
    await sleep(20);
  }
}

/** Runs a test on a fresh setup; prints the agent's log when it fails and disposes of everything after. */
async function withSetup(test: (t: Awaited<ReturnType<typeof setup>>) => Promise<void>): Promise<void> {
  const t = await setup();
  try {
    await test(t);
  } catch (e) {
    console.error(await Deno.readTextFile(`${t.tmp}/agent.log`).catch(() => "(no agent log)"));
    throw e;
  } finally {
    await t.dispose();
  }
}

/** Prints the measured convergence times (`what`, ms to the kernel) and holds each to the bound. */
function holdToBound(what: string, timings: Record<string, number>): void {
  console.log(`${what}: ${JSON.stringify(timings)}`);
  for (const [name, ms] of Object.entries(timings)) assert(ms < boundMs, `${name}: ${ms} ms`);
}

Deno.test({
  name: "netpol enforcement: default deny + allow rules on macvlan and bridge, v4/v6, TCP/UDP; changes; agent restart",
  ...sanitize,
  fn: () =>
    withSetup(async (t) => {
      const { ns, k, kube } = t;
      await k(kube.create(
        MultiNetworkPolicyResource,
        policy(ns, "deny-all", {
          podSelector: {},
          policyTypes: ["Ingress", "Egress"],
        }),
      ));
      await k(kube.create(
        MultiNetworkPolicyResource,
        policy(ns, "server-in", {
          podSelector: { matchLabels: { app: "server" } },
          ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }], ports }],
        }),
      ));
      await k(kube.create(
        MultiNetworkPolicyResource,
        policy(ns, "client-out", {
          podSelector: { matchLabels: { app: "client" } },
          egress: [{ to: [{ podSelector: { matchLabels: { app: "server" } } }], ports }],
        }),
      ));
      const server = await t.createPod("server", { app: "server" });
      const serverAtAdd = await listing(server);
      const client = await t.createPod("client", { app: "client" });
      const other = await t.createPod("other", { app: "other" });
      for (const p of [server, client, other]) {
        // Programmed by the ADD itself, before it answered: read at once, not polled.
        const listing = await run(["ip", "netns", "exec", p.netnsName, "nft", "list", "table", "inet", "danm_netpol"]);
        assert(listing.includes("jump in_"), `${p.name}: ${listing}`);
      }
      await using _s = await netprobeServer(server.netnsName, [7001, 7002, 7003]);
      await using _c = await netprobeServer(client.netnsName, [7001, 7002, 7003]);
      // Peers' tables follow new pods' addresses asynchronously (the agent sees their DanmEps): the server's ingress
      // gets the client's (the client's egress got the server's at its own ADD). Timed: a new client's ADD to the
      // server's table. (Tables are compared whole: the engine merges adjacent addresses into CIDRs.)
      await kernelTable(server.netnsName, (l) => l !== undefined && l !== serverAtAdd);
      const timings: Record<string, number> = {};
      let before = await listing(server);
      const late = await t.createPod("late", { app: "client" });
      await kernelTable(server.netnsName, (l) => l !== undefined && l !== before);
      timings.pod_add_peer_ms = performance.now() - late.addedAt; // an upper bound: polled after the DAD wait

      assertEquals(await probeFrom(client.netnsName, flows(server)), expect(server, true), "client → server");
      assertEquals(await probeFrom(other.netnsName, flows(server)), expect(server, false), "other → server");
      assertEquals(await probeFrom(server.netnsName, flows(client)), expect(client, false), "server → client");
      // eth0 is on a network no policy is for: never filtered.
      const prim = [`tcp:${server.addrs.prim[0]}:7003`, `udp:${server.addrs.prim[0]}:7003`];
      assertEquals(await probeFrom(other.netnsName, prim), { [prim[0]]: true, [prim[1]]: true }, "eth0 open");

      // A label change: `other` becomes a client → allowed within the bound.
      const patchLabels = (name: string, app: string) =>
        k(kube.patch(PodResource, name, { type: "merge", patch: { metadata: { labels: { app } } } }, {
          namespace: ns,
        }));
      before = await listing(server);
      const otherBefore = await listing(other);
      let t0 = performance.now();
      await patchLabels("other", "client");
      await kernelTable(server.netnsName, (l) => l !== undefined && l !== before);
      await kernelTable(other.netnsName, (l) => l !== undefined && l !== otherBefore);
      timings.label_allow_ms = performance.now() - t0;
      assertEquals(
        await probeFrom(other.netnsName, flows(server)),
        expect(server, true),
        "other (now client) → server",
      );

      // A policy change: the server's allow rule removed → the client is dropped too.
      before = await listing(server);
      t0 = performance.now();
      await k(kube.delete(MultiNetworkPolicyResource, "server-in", { namespace: ns }));
      await kernelTable(server.netnsName, (l) => l !== undefined && l !== before);
      timings.policy_delete_ms = performance.now() - t0;
      assertEquals(await probeFrom(client.netnsName, flows(server)), expect(server, false), "allow rule gone");
      before = await listing(server);
      t0 = performance.now();
      await k(kube.create(
        MultiNetworkPolicyResource,
        policy(ns, "server-in", {
          podSelector: { matchLabels: { app: "server" } },
          ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }], ports }],
        }),
      ));
      await kernelTable(server.netnsName, (l) => l !== undefined && l !== before);
      timings.policy_create_ms = performance.now() - t0;
      assertEquals(await probeFrom(client.netnsName, flows(server)), expect(server, true), "allow rule back");

      // The agent dies: enforcement stays in the kernel. Someone removes the server's table meanwhile; the
      // restarted agent puts it back.
      before = await listing(server);
      await t.agent().dispose();
      assertEquals(await listing(server), before, "agent down: the table stays");
      assertEquals(await probeFrom(client.netnsName, flows(server)), expect(server, true), "agent down: enforced");
      await run(["ip", "netns", "exec", server.netnsName, "nft", "delete", "table", "inet", "danm_netpol"]);
      assertEquals(await listing(server), "", "tampered: no table in the server's netns");
      t0 = performance.now();
      await t.startAgent();
      await kernelTable(server.netnsName, (l) => l !== undefined);
      timings.restart_reprogram_ms = performance.now() - t0;
      assertEquals(await listing(server), before, "the restarted agent programmed the same table again");
      assertEquals(await probeFrom(client.netnsName, flows(server)), expect(server, true), "after restart: client");
      assertEquals(await probeFrom(server.netnsName, flows(client)), expect(client, false), "after restart: server");
      holdToBound("netpol convergence (ms, to the kernel)", timings);
    }),
});

/** The interface's IPv4 address in the pod's netns (NAD attachments have no DanmEp to read it from). */
async function ipv4Of(netnsName: string, ifName: string): Promise<string> {
  const out = JSON.parse(await run(["ip", "-n", netnsName, "-j", "-4", "addr", "show", "dev", ifName])) as Array<
    { addr_info: Array<{ local: string }> }
  >;
  const a = out[0]?.addr_info[0]?.local;
  if (!a) fail(`${netnsName}: no IPv4 address on ${ifName}`);
  return a;
}

Deno.test({
  name:
    "netpol enforcement: NAD-only pods are followed after their ADD and across an agent restart; eth0 never policed",
  ...sanitize,
  fn: () =>
    withSetup(async (t) => {
      const { ns, k, kube, r } = t;
      await k(Effect.provideService(ensureCrd(nadCrd), Kube, kube));
      for (
        const [name, bridge, subnet] of [[`nadp-${r}`, `cnp${r}`, "10.243.0.0/24"], [
          `nadb-${r}`,
          `cnq${r}`,
          "10.243.1.0/24",
        ]]
      ) {
        await k(kube.create(NetworkAttachmentDefinitionResource, {
          metadata: { name, namespace: ns },
          spec: {
            config: JSON.stringify({
              cniVersion: "1.0.0",
              type: "bridge",
              bridge,
              ipam: { type: "host-local", ranges: [[{ subnet }]], dataDir: `${t.tmp}/host-local` },
            }),
          },
        }));
      }
      // NAD-only pods: eth0 on nadp (their primary), eth1 on nadb. No DanmEp for any of their interfaces.
      const nads = { "k8s.v1.cni.cncf.io/networks": `nadp-${r}, nadb-${r}` };
      const srv = await t.createPod("nsrv", { app: "nad-srv" }, nads);
      const cli = await t.createPod("ncli", { app: "nad-cli" }, nads);
      const out = await t.createPod("nout", { app: "nad-out" }, nads);
      const eps = (await k(kube.list(DanmEpResource, { namespace: ns }))).items;
      assertEquals(eps.filter((e) => ["nsrv", "ncli", "nout"].includes(e.spec.Pod)).length, 0, "NAD-only: no DanmEp");
      assertEquals(await listing(srv), "", "no policy yet: no table");
      const srvEth1 = await ipv4Of(srv.netnsName, "eth1"), srvEth0 = await ipv4Of(srv.netnsName, "eth0");
      await using _s = await netprobeServer(srv.netnsName, [7001, 7003]);
      const targets = [`tcp:${srvEth1}:7001`, `tcp:${srvEth1}:7003`, `tcp:${srvEth0}:7003`];
      const timings: Record<string, number> = {};

      // A policy created after the pods' ADDs: before, the agent never learnt a NAD-only pod's netns.
      let t0 = performance.now();
      await k(kube.create(MultiNetworkPolicyResource, {
        metadata: { name: "nad-in", namespace: ns, annotations: { [PolicyForAnnotation]: `nadp-${r}, nadb-${r}` } },
        spec: {
          podSelector: { matchLabels: { app: "nad-srv" } },
          ingress: [{ from: [{ podSelector: { matchLabels: { app: "nad-cli" } } }], ports: [{ port: 7001 }] }],
        },
      }));
      await kernelTable(srv.netnsName, (l) => l !== undefined && l.includes('"eth1"'));
      timings.nad_policy_create_ms = performance.now() - t0;
      assert(!(await listing(srv)).includes('"eth0"'), "eth0 (the primary, on nadp) is not policed");
      const want = (cliAllowed: boolean) => ({
        [targets[0]]: cliAllowed,
        [targets[1]]: false,
        [targets[2]]: true,
      });
      assertEquals(await probeFrom(cli.netnsName, targets), want(true), "nad client → nad server");
      assertEquals(await probeFrom(out.netnsName, targets), want(false), "other → nad server");

      // A label change on a NAD-only peer.
      let before = await listing(srv);
      t0 = performance.now();
      await k(kube.patch(PodResource, "nout", { type: "merge", patch: { metadata: { labels: { app: "nad-cli" } } } }, {
        namespace: ns,
      }));
      await kernelTable(srv.netnsName, (l) => l !== undefined && l !== before);
      timings.nad_label_allow_ms = performance.now() - t0;
      assertEquals(await probeFrom(out.netnsName, targets), want(true), "other (now a client) → nad server");

      // The agent restarts; the NAD-only pod's table, removed meanwhile, is programmed again from the records.
      before = await listing(srv);
      await t.agent().dispose();
      await run(["ip", "netns", "exec", srv.netnsName, "nft", "delete", "table", "inet", "danm_netpol"]);
      t0 = performance.now();
      await t.startAgent();
      await kernelTable(srv.netnsName, (l) => l !== undefined);
      timings.nad_restart_reprogram_ms = performance.now() - t0;
      assertEquals(await listing(srv), before, "the restarted agent programmed the NAD-only pod's table again");
      assertEquals(await probeFrom(cli.netnsName, targets), want(true), "after restart: nad client");

      // The primary interface: a policy naming eth0's network (prim) and mv polices mv, never eth0.
      await k(kube.create(MultiNetworkPolicyResource, {
        metadata: { name: "solo-deny", namespace: ns, annotations: { [PolicyForAnnotation]: "prim, mv" } },
        spec: { podSelector: { matchLabels: { app: "solo" } }, policyTypes: ["Ingress"] },
      }));
      const solo = await t.createPod("solo", { app: "solo" });
      const peer = await t.createPod("peer", { app: "peer" });
      const soloTable = await listing(solo); // programmed by the ADD, before it answered
      assert(
        soloTable.includes('"eth1"') && !soloTable.includes('"eth0"'),
        `solo: mv (eth1) policed, eth0 not:\n${soloTable}`,
      );
      await using _o = await netprobeServer(solo.netnsName, [7003]);
      const soloTargets = ["prim", "mv", "br"].map((n) => `tcp:${solo.addrs[n][0]}:7003`);
      assertEquals(await probeFrom(peer.netnsName, soloTargets), {
        [soloTargets[0]]: true, // eth0 on prim: named by solo-deny, never policed
        [soloTargets[1]]: false, // mv: default deny
        [soloTargets[2]]: true, // br: no policy names it
      }, "peer → solo");
      holdToBound("netpol NAD-only pods (ms, to the kernel)", timings);
    }),
});
