// DANM features that were proven only on in-memory layers, now on the real thing: the real apiserver, host network
// namespaces, the reference CNI plugins (bridge, tuning, host-local) exec'd through the thin client and the node
// daemon exactly as a runtime execs them. One test per feature group:
//   IPv6 addresses from an allocation_pool_v6, routes6 and proutes6 (policy rule + table), `ip: none`;
//   the namespace's `default` network, AllowedTenants and namespace-local references refused at CNI ADD (no webhook);
//   attachments named in k8s.v1.cni.cncf.io/networks (NetworkAttachmentDefinitions);
//   a multi-plugin .conflist (bridge + tuning): prevResult handed on, DEL in reverse, GC reaching every plugin;
//   attachments run concurrently, each within its own time limit;
//   CHECK after damage to the pod's interfaces, STATUS while the apiserver is out of reach.
import { Effect } from "effect";
import { NetworkStatusAnnotation } from "../../../core/api/annotations.ts";
import { DanmEpResource, DanmNetResource } from "../../../core/api/danm.ts";
import { NamespaceResource, NetworkAttachmentDefinitionResource, PodResource } from "../../../core/api/k8s.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { CniCallFailed } from "../../harness/fakelet.ts";
import { run } from "../../harness/proc.ts";
import { ensureCrd, nadCrd } from "../kube/crds.ts";
import { type CniNode, ipJson, startCniNode } from "./support.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };

const globalAddresses = async (ns: string, ifname: string) =>
  ((await ipJson(ns, "addr", "show", "dev", ifname))[0]?.addr_info as Array<
    { local: string; prefixlen: number; scope: string }
  > ?? []).filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`);

const writeConf = (n: CniNode, name: string, conf: Record<string, unknown>) =>
  Deno.writeTextFile(`${n.cniDir}/${name}${"plugins" in conf ? ".conflist" : ".conf"}`, JSON.stringify(conf));

const removeLinks = async (...names: string[]) => {
  for (const l of names) await run(["ip", "link", "del", l]).catch(() => {});
};

const interfaces = (entries: unknown[]) => ({ "danm.io/interfaces": JSON.stringify(entries) });

Deno.test({
  name: "IPv6 from allocation_pool_v6 with routes6 and proutes6 (rule + table); ip: none leaves the interface bare",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    try {
      await writeConf(n, `v6${r}`, { cniVersion: "1.0.0", name: `v6${r}`, type: "bridge", bridge: `cv6${r}` });
      await writeConf(n, `nn${r}`, { cniVersion: "1.0.0", name: `nn${r}`, type: "bridge", bridge: `cnn${r}` });
      const v6 = await n.createNetwork("DanmNet", `v6-${r}`, {
        NetworkID: `v6${r}`,
        NetworkType: "bridge",
        Options: {
          cidr: "10.234.0.0/24",
          net6: "fd00:234::/64",
          allocation_pool_v6: { cidr: "fd00:234::/120", start: "fd00:234::10", end: "fd00:234::20" },
          routes6: { "fd00:999::/64": "fd00:234::1" },
          rt_tables: 50,
        },
      });
      const nn = await n.createNetwork("DanmNet", `nn-${r}`, {
        NetworkID: `nn${r}`,
        NetworkType: "bridge",
        Options: { cidr: "10.235.0.0/24", container_prefix: "bare" },
      });
      await n.createPod(
        `p-${r}`,
        interfaces([
          { network: `v6-${r}`, ip: "dynamic", ip6: "dynamic", proutes6: { "fd00:888::/64": "fd00:234::1" } },
          { network: `nn-${r}`, ip: "none" },
        ]),
      );
      const sb = await n.fakelet.runPod("default", `p-${r}`);
      assertEquals(await globalAddresses(sb.netnsName, "eth0"), ["10.234.0.1/24", "fd00:234::10/64"]);
      assertEquals(await globalAddresses(sb.netnsName, "bare1"), [], "ip: none: no address");
      const main6 = await ipJson(sb.netnsName, "-6", "route", "show");
      assert(
        main6.some((x) => x.dst === "fd00:999::/64" && x.gateway === "fd00:234::1" && x.dev === "eth0"),
        `routes6 in main: ${JSON.stringify(main6)}`,
      );
      const rules6 = await ipJson(sb.netnsName, "-6", "rule", "show");
      assert(
        rules6.some((x) => x.src === "fd00:234::" && x.srclen === 64 && String(x.table) === "50"),
        `ip -6 rule from fd00:234::/64 lookup 50: ${JSON.stringify(rules6)}`,
      );
      const t50 = await ipJson(sb.netnsName, "-6", "route", "show", "table", "50");
      assert(
        t50.some((x) => x.dst === "fd00:888::/64" && x.gateway === "fd00:234::1"),
        `proutes6 in table 50: ${JSON.stringify(t50)}`,
      );
      assertEquals((await n.reservations(v6.metadata.uid!)).length, 2, "one IPv4 and one IPv6 reservation");
      assertEquals((await n.reservations(nn.metadata.uid!)).length, 0, "ip: none reserves nothing");
      await n.fakelet.stopPod("default", `p-${r}`);
      assertEquals((await n.reservations(v6.metadata.uid!)).length, 0);
    } finally {
      await removeLinks(`cv6${n.run}`, `cnn${n.run}`);
      await n.dispose();
    }
  },
});

Deno.test({
  name: "the namespace's default network for a pod naming none; AllowedTenants and namespace-local references at ADD",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    const ns = `dflt-${r}`;
    try {
      await Effect.runPromise(n.kube.create(NamespaceResource, { metadata: { name: ns } }));
      await writeConf(n, `df${r}`, { cniVersion: "1.0.0", name: `df${r}`, type: "bridge", bridge: `cdf${r}` });
      await writeConf(n, `cl${r}`, { cniVersion: "1.0.0", name: `cl${r}`, type: "bridge", bridge: `ccl${r}` });
      // DanmNet `default` in the pod's namespace: DANM's first choice for a pod that names no network.
      await Effect.runPromise(n.kube.create(DanmNetResource, {
        metadata: { name: "default", namespace: ns },
        spec: { NetworkID: `df${r}`, NetworkType: "bridge", Options: { cidr: "10.236.0.0/24" } },
      }));
      const only = `only-${r}`;
      await n.createNetwork("ClusterNetwork", only, {
        NetworkID: `cl${r}`,
        NetworkType: "bridge",
        AllowedTenants: ["kube-public"],
        Options: { cidr: "10.236.1.0/24" },
      });
      const pod = (name: string, annotations?: Record<string, string>) =>
        Effect.runPromise(n.kube.create(PodResource, {
          metadata: { name, namespace: ns, ...(annotations ? { annotations } : {}) },
          spec: { nodeName: n.nodeName, containers: [{ name: "c", image: "pause" }] },
        }));
      await pod("plain");
      const plain = await n.fakelet.runPod(ns, "plain");
      assertEquals(await globalAddresses(plain.netnsName, "eth0"), ["10.236.0.1/24"], "from the namespace's default");
      const refusedAdd = async (name: string, annotations: Record<string, string>) => {
        await pod(name, annotations);
        const e = await n.fakelet.runPod(ns, name).then(() => undefined, (e) => e);
        assert(e instanceof CniCallFailed, `ADD of ${name} must fail: ${e}`);
        return e.message;
      };
      assertMatch(
        await refusedAdd("tenant", interfaces([{ clusterNetwork: only, ip: "dynamic" }])),
        new RegExp(`namespace ${ns} is not in the AllowedTenants of ClusterNetwork ${only} \\(kube-public\\)`),
      );
      assertMatch(
        await refusedAdd("crossns", interfaces([{ network: "default/x" }])),
        /default\/x\\?" is in namespace default: DanmNet references are namespace-local/,
      );
      await n.fakelet.stopPod(ns, "plain");
    } finally {
      await removeLinks(`cdf${r}`, `ccl${r}`);
      for (const name of ["plain", "tenant", "crossns"]) {
        await Effect.runPromise(
          Effect.ignore(n.kube.delete(PodResource, name, { namespace: ns, gracePeriodSeconds: 0 })),
        );
      }
      await Effect.runPromise(Effect.ignore(n.kube.delete(DanmNetResource, "default", { namespace: ns })));
      await Effect.runPromise(Effect.ignore(n.kube.delete(NamespaceResource, ns)));
      await n.dispose();
    }
  },
});

Deno.test({
  name: "k8s.v1.cni.cncf.io/networks: NetworkAttachmentDefinitions attach with their own config and names",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    try {
      await n.kubeRun(ensureCrd(nadCrd));
      const nad = `nad-${r}`;
      await Effect.runPromise(n.kube.create(NetworkAttachmentDefinitionResource, {
        metadata: { name: nad, namespace: "default" },
        spec: {
          config: JSON.stringify({
            cniVersion: "1.0.0",
            type: "bridge",
            bridge: `cnd${r}`,
            ipam: { type: "host-local", ranges: [[{ subnet: "10.237.0.0/24" }]], dataDir: `${n.tmp}/host-local` },
          }),
        },
      }));
      await n.createPod(`p-${r}`, { "k8s.v1.cni.cncf.io/networks": `${nad}, ${nad}@ext` });
      const sb = await n.fakelet.runPod("default", `p-${r}`);
      const eth0 = await globalAddresses(sb.netnsName, "eth0"), ext = await globalAddresses(sb.netnsName, "ext");
      assertMatch(eth0[0] ?? "", /^10\.237\.0\.\d+\/24$/);
      assertMatch(ext[0] ?? "", /^10\.237\.0\.\d+\/24$/);
      assert(eth0[0] !== ext[0], "two addresses from the NAD's own IPAM");
      const pod = await Effect.runPromise(n.kube.get(PodResource, `p-${r}`, { namespace: "default" }));
      const status = JSON.parse(pod.metadata.annotations?.[NetworkStatusAnnotation] ?? "[]") as Array<
        { name: string; interface: string; ips: string[] }
      >;
      assertEquals(status.map((s) => `${s.name} ${s.interface} ${s.ips}`), [
        `default/${nad} eth0 ${eth0[0].split("/")[0]}`,
        `default/${nad} ext ${ext[0].split("/")[0]}`,
      ]);
      const outs = await n.fakelet.stopPod("default", `p-${r}`);
      assertEquals(outs.map((o) => o.code), [0]);
      const leases = [...Deno.readDirSync(`${n.tmp}/host-local/${nad}`)].filter((e) => e.name.startsWith("10."));
      assertEquals(leases.map((e) => e.name), [], "DEL reached the NAD's plugin: host-local released both");
    } finally {
      await removeLinks(`cnd${n.run}`);
      await n.dispose();
    }
  },
});

/** A plugin in the node's bin dir that logs "<command> <name>" to `log`, then runs the reference plugin `real`. */
const logged = (n: CniNode, name: string, real: string, log: string) =>
  n.bin.addPlugin(name, `#!/bin/sh\necho "$CNI_COMMAND ${name}" >> '${log}'\nexec '${n.bin.dir}/${real}' "$@"\n`);

Deno.test({
  name: ".conflist chain bridge + tuning: prevResult handed on (tuning's MAC reaches the result), DEL in reverse, " +
    "GC reaches every plugin",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    const log = `${n.tmp}/calls.log`;
    try {
      await logged(n, "lbridge", "bridge", log);
      await logged(n, "ltuning", "tuning", log);
      const dataDir = `${n.tmp}/host-local`;
      await writeConf(n, `ch${r}`, {
        cniVersion: "1.1.0",
        name: `ch${r}`,
        plugins: [
          {
            type: "lbridge",
            bridge: `cch${r}`,
            ipam: { type: "host-local", ranges: [[{ subnet: "10.238.0.0/24" }]], dataDir },
          },
          { type: "ltuning", mac: "02:00:00:00:02:38" },
        ],
      });
      await n.createNetwork("DanmNet", `ch-${r}`, { NetworkID: `ch${r}`, NetworkType: "bridge" });
      const calls = async () => (await Deno.readTextFile(log).catch(() => "")).trim().split("\n").filter(Boolean);
      for (const p of ["a", "b"]) await n.createPod(`${p}-${r}`, interfaces([{ network: `ch-${r}` }]));
      const a = await n.fakelet.runPod("default", `a-${r}`);
      assertEquals(await calls(), ["ADD lbridge", "ADD ltuning"]);
      const link = (await ipJson(a.netnsName, "link", "show", "dev", "eth0"))[0];
      assertEquals(link.address, "02:00:00:00:02:38", "tuning set the MAC on the interface bridge made");
      const pod = await Effect.runPromise(n.kube.get(PodResource, `a-${r}`, { namespace: "default" }));
      const [status] = JSON.parse(pod.metadata.annotations?.[NetworkStatusAnnotation] ?? "[]") as Array<
        { mac: string }
      >;
      assertEquals(status?.mac, "02:00:00:00:02:38", "tuning's result, built on bridge's prevResult, is danm's");
      await Deno.remove(log);
      await n.fakelet.stopPod("default", `a-${r}`);
      assertEquals(await calls(), ["DEL ltuning", "DEL lbridge"], "DEL runs the chain in reverse");

      // A sandbox the runtime lost without a DEL: GC reaches both plugins; host-local frees its address.
      const b = await n.fakelet.runPod("default", `b-${r}`);
      const bAddress = (await globalAddresses(b.netnsName, "eth0"))[0].split("/")[0];
      n.fakelet.lose("default", `b-${r}`);
      await run(["ip", "netns", "del", b.netnsName]);
      await Deno.remove(log);
      const [gc] = await n.fakelet.gc([]);
      assertEquals([gc.code, gc.stdout], [0, ""]);
      const gcCalls = await calls();
      assert(gcCalls.includes("GC lbridge") && gcCalls.includes("GC ltuning"), `GC calls: ${gcCalls}`);
      const leases = [...Deno.readDirSync(`${dataDir}/ch${r}`)].map((e) => e.name);
      assertEquals(leases.filter((f) => f === bAddress), [], "host-local's GC released the lost sandbox's address");
    } finally {
      await removeLinks(`cch${n.run}`);
      await n.dispose();
    }
  },
});

Deno.test({
  name: "attachments run concurrently (two slow delegates overlap) and each has its own time limit",
  ...sanitize,
  fn: async () => {
    const n = await startCniNode();
    const r = n.run;
    try {
      // A delegate that takes its time, then does the work of the reference bridge plugin; it logs when its ADD
      // starts and ends, so overlap is seen directly (elapsed time alone means little on a loaded 2-core machine).
      const spans = `${n.tmp}/spans.log`;
      await n.bin.addPlugin(
        "slowbridge",
        `#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then echo start >> '${spans}'; sleep 2; echo end >> '${spans}'; fi\n` +
          `exec '${n.bin.dir}/bridge' "$@"\n`,
      );
      await n.bin.addPlugin(
        "stuck",
        `#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] && sleep 30\nexec '${n.bin.dir}/bridge' "$@"\n`,
      );
      const nets = [[`s1${r}`, "slowbridge", "10.239.1.0/24"], [`s2${r}`, "slowbridge", "10.239.2.0/24"], [
        `st${r}`,
        "stuck",
        "10.239.3.0/24",
      ]];
      for (const [id, type, cidr] of nets) {
        await writeConf(n, id, { cniVersion: "1.0.0", name: id, type, bridge: `c${id}` });
        await n.createNetwork("DanmNet", `${id}-n`, { NetworkID: id, NetworkType: "bridge", Options: { cidr } });
      }
      await n.createPod(
        `two-${r}`,
        interfaces([
          { network: `s1${r}-n`, ip: "dynamic" },
          { network: `s2${r}-n`, ip: "dynamic" },
        ]),
      );
      const two = await n.fakelet.runPod("default", `two-${r}`);
      const marks = (await Deno.readTextFile(spans)).trim().split("\n");
      assertEquals(
        marks,
        ["start", "start", "end", "end"],
        `both started before either ended (${Math.round(two.addMs)} ms)`,
      );
      assertEquals(await globalAddresses(two.netnsName, "eth1"), ["10.239.2.1/24"]);

      await n.fakelet.stopPod("default", `two-${r}`);

      // A node whose attachments get 2 s each: a delegate that hangs fails the ADD at its limit, naming it.
      const quick = await startCniNode({ node: { attachTimeoutMs: 2_000 } });
      try {
        await quick.bin.addPlugin(
          "stuck",
          `#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] && sleep 30\nexec '${quick.bin.dir}/bridge' "$@"\n`,
        );
        await writeConf(quick, `st${r}`, { cniVersion: "1.0.0", name: `st${r}`, type: "stuck", bridge: `cst${r}` });
        await quick.createPod(`stuck-${r}`, interfaces([{ network: `st${r}-n`, ip: "dynamic" }]));
        const t0 = performance.now();
        const e = await quick.fakelet.runPod("default", `stuck-${r}`).then(() => undefined, (e) => e);
        const ms = performance.now() - t0;
        assert(e instanceof CniCallFailed, `ADD with a stuck delegate must fail: ${e}`);
        assertMatch(e.message, new RegExp(`DanmNet default/st${r}-n \\(eth0\\): attach: not done within 2000 ms`));
        assert(ms >= 2_000 && ms < 25_000, `failed after ${Math.round(ms)} ms; the delegate would take 30 s`);
        const eps = await Effect.runPromise(quick.kube.list(DanmEpResource, { namespace: "default" }));
        assertEquals(eps.items.filter((x) => x.spec.Pod === `stuck-${r}`).length, 0, "the failed pod left no DanmEp");
      } finally {
        await quick.dispose();
      }
    } finally {
      await removeLinks(`cs1${n.run}`, `cs2${n.run}`, `cst${n.run}`);
      await n.dispose();
    }
  },
});

/** A TCP forwarder to the apiserver that can be cut and restored: the node's view of an unreachable apiserver. */
function apiserverLink(target: URL) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let cut = false;
  (async () => {
    for await (const c of listener) {
      if (cut) {
        c.close();
        continue;
      }
      conns.add(c);
      Deno.connect({ hostname: target.hostname, port: Number(target.port) }).then((up) => {
        conns.add(up);
        const close = () => {
          for (const x of [c, up]) {
            try {
              x.close();
            } catch { /* closed */ }
            conns.delete(x);
          }
        };
        c.readable.pipeTo(up.writable).catch(() => {}).finally(close);
        up.readable.pipeTo(c.writable).catch(() => {}).finally(close);
      }, () => c.close());
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    cut: () => {
      cut = true;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      conns.clear();
    },
    restore: () => void (cut = false),
    close: () => listener.close(),
  };
}

Deno.test({
  name: "CHECK names the damage to a pod's interfaces; STATUS says when the apiserver is out of reach, and recovers",
  ...sanitize,
  fn: async () => {
    const base = await startCniNode();
    const link = apiserverLink(new URL(base.cluster.url));
    const kubeconfig = `${base.tmp}/via-link.yaml`;
    await Deno.writeTextFile(
      kubeconfig,
      (await Deno.readTextFile(base.cluster.kubeconfigPath)).replace(
        new URL(base.cluster.url).host,
        `127.0.0.1:${link.port}`,
      ),
    );
    const n = await startCniNode({
      cluster: { ...base.cluster, kubeconfigPath: kubeconfig },
      node: { statusProbeTtlMs: 0 },
    });
    const r = n.run;
    try {
      await writeConf(n, `ck${r}`, { cniVersion: "1.0.0", name: `ck${r}`, type: "bridge", bridge: `cck${r}` });
      await n.createNetwork("DanmNet", `ck-${r}`, {
        NetworkID: `ck${r}`,
        NetworkType: "bridge",
        Options: { cidr: "10.240.7.0/24", rt_tables: 60 },
      });
      await n.createPod(
        `p-${r}`,
        interfaces([{ network: `ck-${r}`, ip: "dynamic", proutes: { "10.241.0.0/16": "10.240.7.254" } }]),
      );
      const sb = await n.fakelet.runPod("default", `p-${r}`);
      const check = async () => {
        const [o] = await n.fakelet.check(sb);
        return o.code === 0 ? "ok" : String((o.json as { details?: string; msg?: string })?.details ?? o.stdout);
      };
      assertEquals(await check(), "ok");
      await run(["ip", "-n", sb.netnsName, "rule", "del", "from", "10.240.7.0/24", "lookup", "60"]);
      assertMatch(await check(), /policy rule from 10\.240\.7\.0\/24 lookup 60 is missing/);
      await run(["ip", "-n", sb.netnsName, "addr", "del", "10.240.7.1/24", "dev", "eth0"]);
      assertMatch(await check(), /address 10\.240\.7\.1\/24 is missing on eth0/);
      await run(["ip", "-n", sb.netnsName, "link", "del", "eth0"]);
      assertMatch(await check(), /interface eth0 is missing/);

      const status = async () => {
        const [o] = await n.fakelet.status();
        return o.code === 0 ? "ok" : String((o.json as { msg?: string })?.msg ?? o.stdout);
      };
      assertEquals(await status(), "ok");
      link.cut();
      assertMatch(await status(), /danm cannot reach the Kubernetes API/);
      link.restore();
      let back = "";
      for (let i = 0; i < 50 && back !== "ok"; i++) {
        back = await status();
        if (back !== "ok") await new Promise((res) => setTimeout(res, 200));
      }
      assertEquals(back, "ok", "STATUS recovers with the apiserver");
      await n.fakelet.stopPod("default", `p-${r}`);
    } finally {
      link.restore();
      await removeLinks(`cck${n.run}`);
      await n.dispose();
      link.close();
      await base.dispose();
    }
  },
});
