// What an operator sees of the real node agent (cmd/netwatcher.ts as a process, the CNI daemon inside it) on the real
// apiserver, with pods in real network namespaces set up by the fake kubelet through the `danm` launcher and the
// reference bridge plugin: its /metrics as Prometheus parses it, the Event on a pod whose setup failed, its log line
// per CNI call, and its readiness while the apiserver stops and comes back.
import * as k8s from "@kubernetes/client-node";
import { Effect, Exit, Scope } from "effect";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import { type Event, EventResource, PodResource } from "../../../core/api/k8s.ts";
import { NetworkSetupFailed } from "../../../core/cni/add.ts";
import { DanmNetResource } from "../../../core/api/danm.ts";
import type { KubeService } from "../../../core/ports/kube.ts";
import { startApiServer } from "../../harness/apiserver.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { makeCniBin } from "../../harness/cnibin.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { CniCallFailed, Fakelet } from "../../harness/fakelet.ts";
import { parseExposition, samples } from "../../harness/prom.ts";
import { freePort, repoRoot, run } from "../../harness/proc.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { eventually } from "../../harness/eventually.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };

/** A danm daemon run as a process: the port of its /metrics, /healthz and /readyz, and its output. */
interface Daemon {
  readonly port: number;
  /** The daemon's stdout and stderr so far, one log entry a line. */
  readonly lines: () => string[];
  readonly stop: () => Promise<void>;
}

interface Agent extends Daemon {
  readonly socket: string;
}

/** `deno run -A cmd/<script>` with `args`, its output collected line by line. */
function spawnDaemon(script: string, port: number, args: string[]): Daemon {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/cmd/${script}`, `--metrics-port=${port}`, "--log-format=json", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [];
  const pump = async (s: ReadableStream<Uint8Array>) => {
    let rest = "";
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      out.push(...parts);
    }
    if (rest) out.push(rest);
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  return {
    port,
    lines: () => [...out],
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await pumped;
    },
  };
}

/** cmd/netwatcher.ts as a DaemonSet runs it (JSON logs, metrics on `port`), serving no network of other tests. */
function startAgent(o: { kubeconfig: string; nodeName: string; dir: string; selector: string }): Agent {
  const socket = `${o.dir}/danm.sock`;
  const daemon = spawnDaemon("netwatcher.ts", freePort(), [
    `--kubeconfig=${o.kubeconfig}`,
    `--node-name=${o.nodeName}`,
    `--cni-socket=${socket}`,
    `--cni-state-dir=${o.dir}/sandboxes`,
    `--network-selector=${o.selector}`,
    "--reclaim-period=0s",
  ]);
  return { ...daemon, socket };
}

const get = async (port: number, path: string) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text() };
};

/** Waits for /readyz to answer 200; the last answer and the daemon's log otherwise. */
async function ready(a: Daemon): Promise<void> {
  let last = "";
  await eventually("/readyz", async () => {
    const r = await get(a.port, "/readyz");
    last = `${r.status} ${r.body}`;
    return r.status === 200 || undefined;
  }, 90_000).catch((e) => {
    throw new Error(`${e.message}; last answer: ${last}\n${a.lines().slice(-30).join("\n")}`);
  });
}

async function liveKube(kubeconfig: string, scope: Scope.Scope): Promise<KubeService> {
  return await Effect.runPromise(
    makeLiveKube({ config: { _tag: "Kubeconfig", path: kubeconfig } }).pipe(Scope.provide(scope)),
  );
}

Deno.test({
  name: "node agent: after 3 pod ADDs and a failing one, /metrics (Prometheus' parser) counts 3 successes and 1 " +
    "failure, pool gauges equal danmctl showalloc, the pod has one Event naming the network, one log line per call",
  ...sanitize,
  fn: async () => {
    const cluster = await useCluster();
    await installDanmCrds(cluster.kubeConfig);
    const run6 = crypto.randomUUID().slice(0, 6);
    const nodeName = uniqueName("obs-node");
    const dir = await Deno.makeTempDir({ prefix: "danm-obs-" });
    const scope = Scope.makeUnsafe();
    const kube = await liveKube(cluster.kubeconfigPath, scope);
    const k = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
    const agent = startAgent({
      kubeconfig: cluster.kubeconfigPath,
      nodeName,
      dir,
      selector: `danm.test/obs=${run6}`,
    });
    const bin = await makeCniBin({ socket: agent.socket });
    const cniDir = `${dir}/net.d`;
    const bridge = `obsbr${run6}`;
    const created: Array<() => Promise<unknown>> = [];
    try {
      await Deno.mkdir(cniDir);
      await Deno.writeTextFile(
        `${cniDir}/obs${run6}.conf`,
        JSON.stringify({ cniVersion: "1.0.0", name: `obs${run6}`, type: "bridge", bridge }),
      );
      await bin.addPlugin(
        "obsfail",
        `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then\n  echo '{"cniVersion":"1.0.0","code":7,"msg":"deliberate failure"}'\n  exit 1\nfi\nexit 0\n`,
      );
      await Deno.writeTextFile(
        `${cniDir}/obsfail${run6}.conf`,
        JSON.stringify({ cniVersion: "1.0.0", name: "f", type: "obsfail" }),
      );
      const net = `obs-${run6}`, bad = `obs-bad-${run6}`;
      for (
        const [name, spec] of [
          [net, { NetworkID: `obs${run6}`, NetworkType: "bridge", Options: { cidr: "10.233.7.0/24" } }],
          [bad, { NetworkID: `obsfail${run6}`, NetworkType: "obsfail" }],
        ] as const
      ) {
        await k(kube.create(DanmNetResource, { metadata: { name, namespace: "default" }, spec }));
        created.push(() => k(kube.delete(DanmNetResource, name, { namespace: "default" })));
      }
      const pod = async (name: string, networks: string[]) => {
        await k(kube.create(PodResource, {
          metadata: {
            name,
            namespace: "default",
            annotations: { "danm.io/interfaces": JSON.stringify(networks.map((n) => ({ network: n, ip: "dynamic" }))) },
          },
          spec: { nodeName, containers: [{ name: "c", image: "pause" }] },
        }));
        created.push(() => k(kube.delete(PodResource, name, { namespace: "default", gracePeriodSeconds: 0 })));
      };
      await ready(agent);
      const fakelet = new Fakelet({
        nodeName,
        kube,
        binDir: bin.dir,
        netconf: { cniVersion: "1.1.0", name: "danm_meta_cni", type: "danm", cniDir },
      });
      const good = [1, 2, 3].map((i) => `obs-${run6}-${i}`);
      for (const name of good) {
        await pod(name, [net]);
        await fakelet.runPod("default", name);
      }
      const failing = `obs-${run6}-broken`;
      await pod(failing, [net, bad]);
      const failure = await fakelet.runPod("default", failing).then(() => undefined, (e) => e);
      assert(failure instanceof CniCallFailed, `the broken pod's ADD fails: ${failure}`);

      // /metrics through Prometheus' own parser; its linter has nothing to say about any family.
      const parsed = await parseExposition((await get(agent.port, "/metrics")).body);
      assertEquals(parsed.lint, [], "promlint");
      const count = (result: string) =>
        samples(parsed, "danm_cni_request_duration_seconds", { command: "ADD", result, node: nodeName })[0]?.count;
      assertEquals([count("success"), count("error")], [3, 1]);
      const own = samples(parsed, "danm_cni_request_own_duration_seconds", { command: "ADD", result: "success" })[0];
      const total = samples(parsed, "danm_cni_request_duration_seconds", { command: "ADD", result: "success" })[0];
      assert(own.sum! < total.sum!, `danm's own time ${own.sum} s < the whole ADD ${total.sum} s (bridge delegates)`);
      const failed = samples(parsed, "danm_cni_attachment_duration_seconds", { network: bad, result: "error" });
      assertEquals(failed.map((s) => [s.labels.backend, s.count]), [["static", 1]]);

      // Pool gauges against danmctl showalloc, run as an operator runs it.
      const shown = JSON.parse(
        await run([
          Deno.execPath(),
          "run",
          "-A",
          `${repoRoot}/cmd/danmctl.ts`,
          "showalloc",
          net,
          "-n",
          "default",
          "-o",
          "json",
          "--kubeconfig",
          cluster.kubeconfigPath,
        ]),
      ) as { pools: Array<{ family: number; used: number; capacity: string }> };
      const pool = { network_kind: "DanmNet", network_namespace: "default", network: net, family: "4" };
      const gauge = (name: string) => samples(parsed, name, pool).map((s) => s.value);
      assertEquals(shown.pools.map((p) => [p.family, p.used]), [[4, 3]]);
      assertEquals(gauge("danm_ipam_pool_allocated_addresses"), [shown.pools[0].used]);
      assertEquals(gauge("danm_ipam_pool_capacity_addresses"), [Number(shown.pools[0].capacity)]);

      // One Event on the broken pod, naming the failing network and why.
      const uid = (await k(kube.get(PodResource, failing, { namespace: "default" }))).metadata.uid;
      const events = await eventually("the broken pod's Event", async () => {
        const all = (await k(kube.list(EventResource, { namespace: "default" }))).items;
        const mine = all.filter((e: Event) => e.involvedObject.uid === uid);
        return mine.length > 0 ? mine : undefined;
      }, 30_000);
      assertEquals(events.map((e) => [e.type, e.reason, e.count, e.source?.host]), [
        ["Warning", NetworkSetupFailed, 1, nodeName],
      ]);
      assertMatch(events[0].message ?? "", new RegExp(`DanmNet default/${bad} \\(eth1\\).*deliberate failure`));

      // One log line per CNI call: the three pods' ADDs, the broken pod's ADD with its reason and the kubelet's DEL.
      const calls = agent.lines().filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, string>)
        .filter((l) => l.plugin === "danm");
      const of = (pod: string) =>
        calls.filter((c) => c.pod === `default/${pod}`).map((c) => `${c.command} ${c.result}`);
      for (const name of good) assertEquals(of(name), ["ADD success"], name);
      assertEquals(of(failing), ["ADD error", "DEL success"]);
      const line = calls.find((c) => c.pod === `default/${failing}` && c.command === "ADD")!;
      assertEquals(line.level, "warn");
      assertEquals(line.networks, `DanmNet default/${net} (eth0), DanmNet default/${bad} (eth1)`);
      assertMatch(line.error, new RegExp(`network DanmNet default/${bad} \\(eth1\\): .*deliberate failure`));
      assertMatch(line.sandbox, /^[0-9a-f]{64}$/);
      assert(Number(line.duration_ms) > 0, JSON.stringify(line));

      for (const name of good) await fakelet.stopPod("default", name);
    } finally {
      await agent.stop();
      for (const undo of created.reverse()) await undo().catch(() => {});
      await run(["ip", "link", "del", bridge]).catch(() => {});
      await bin.dispose();
      await Effect.runPromise(Scope.close(scope, Exit.void));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await cluster.release();
    }
  },
});

Deno.test({
  name: "node agent and svcwatcher: /readyz is 503 naming the apiserver while it is stopped, 200 once it is back; " +
    "/healthz stays 200",
  ...sanitize,
  fn: async () => {
    // An apiserver of its own: stopping the shared one would stall every other test.
    const api = await startApiServer();
    const dir = await Deno.makeTempDir({ prefix: "danm-obs-ready-" });
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(api.kubeconfigPath);
    const daemons: Daemon[] = [];
    let stopped = false;
    try {
      await installDanmCrds(kubeConfig);
      const agent = startAgent({
        kubeconfig: api.kubeconfigPath,
        nodeName: "ready-node",
        dir,
        selector: "danm.test/none=x",
      });
      daemons.push(agent);
      // svcwatcher as its Deployment runs it: ready when the apiserver answers and, leading, its view is loaded.
      const svcwatcher = spawnDaemon("svcwatcher.ts", freePort(), [
        `--kubeconfig=${api.kubeconfigPath}`,
        "--lease-namespace=default",
        "--identity=ready-test",
      ]);
      daemons.push(svcwatcher);
      const named = { "node agent": agent, svcwatcher };
      for (const d of daemons) await ready(d);
      // Stopped, not killed: connections hang as with an apiserver that froze or a partitioned node.
      Deno.kill(api.pids.apiserver, "SIGSTOP");
      stopped = true;
      for (const [name, d] of Object.entries(named)) {
        const down = await eventually(`${name}'s /readyz 503`, async () => {
          const r = await get(d.port, "/readyz");
          return r.status === 503 ? r.body : undefined;
        }, 30_000);
        assertMatch(down, /apiserver: the apiserver does not answer/, name);
        assertEquals((await get(d.port, "/healthz")).status, 200, `${name}: liveness is not readiness`);
      }
      Deno.kill(api.pids.apiserver, "SIGCONT");
      stopped = false;
      for (const [name, d] of Object.entries(named)) {
        await ready(d);
        assertEquals((await get(d.port, "/readyz")).body, "ok\n", name);
      }
    } finally {
      if (stopped) Deno.kill(api.pids.apiserver, "SIGCONT");
      for (const d of daemons) await d.stop();
      await api.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(api.dir, { recursive: true }).catch(() => {});
    }
  },
});
