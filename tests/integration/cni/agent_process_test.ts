// The node agent process under load and on SIGTERM (cmd/netwatcher.ts, started as the DaemonSet runs it, on the real
// apiserver): requests beyond --cni-max-concurrent + --cni-max-queue are answered at once with CNI error 11 ("try
// again later"), a SIGTERM lets running ADDs finish (up to --cni-drain-timeout) while waiting ones are told to retry,
// and past the drain timeout a running ADD is cut off with error 11 too. The pods' delegate is a test plugin that
// sleeps, so what is in flight when is known; requests go through the real thin `danm` client.
import { Effect, Exit, Scope } from "effect";
import { ClusterNetworkResource } from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import type { KubeService } from "../../../core/ports/kube.ts";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import { startNodeAgent } from "../../harness/agent.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { makeCniBin } from "../../harness/cnibin.ts";
import { useCluster } from "../../harness/cluster.ts";
import { CniCallFailed, Fakelet } from "../../harness/fakelet.ts";
import { installDanmCrds } from "../api/danm_crds.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One agent process with a slow delegate network, pods created on demand, everything removed after. */
async function withAgent(
  agentArgs: ReadonlyArray<string>,
  body: (t: {
    agent: Awaited<ReturnType<typeof startNodeAgent>>;
    fakelet: Fakelet;
    /** Seconds the delegate sleeps in ADD from now on. */
    setDelay: (seconds: number) => Promise<void>;
    /** Creates a pod on the network; resolves to its name. */
    pod: (name: string) => Promise<string>;
    /** Resolves once `n` delegate ADDs have started. */
    started: (n: number) => Promise<void>;
  }) => Promise<void>,
) {
  const cluster = await useCluster();
  await installDanmCrds(cluster.kubeConfig);
  const run = crypto.randomUUID().slice(0, 6);
  const nodeName = `agent-${run}`;
  const tmp = await Deno.makeTempDir({ prefix: `danm-agent-${run}-` });
  const scope = Scope.makeUnsafe();
  const kube: KubeService = await Effect.runPromise(
    makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Scope.provide(scope)),
  );
  const k = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
  const pods: string[] = [];
  const network = `slow-${run}`;
  const agent = await startNodeAgent({
    kubeconfig: cluster.kubeconfigPath,
    nodeName,
    dir: `${tmp}/agent`,
    args: agentArgs,
    logFile: `${tmp}/agent.log`,
  });
  const bin = await makeCniBin({ socket: agent.socket, referencePlugins: false });
  const fakelet = new Fakelet({
    nodeName,
    kube,
    binDir: bin.dir,
    netconf: { cniVersion: "1.1.0", name: "danm_meta_cni", type: "danm", cniDir: `${tmp}/net.d` },
  });
  try {
    // Marks its start, sleeps as told, answers an empty result (danm tolerates a delegate that makes no link).
    await bin.addPlugin(
      "slowcni",
      [
        "#!/bin/sh",
        "cat >/dev/null",
        `if [ "$CNI_COMMAND" = ADD ]; then touch '${tmp}/started/'"$CNI_CONTAINERID"; sleep "$(cat '${tmp}/delay')"; fi`,
        `echo '{"cniVersion":"1.0.0","interfaces":[],"ips":[],"routes":[],"dns":{}}'`,
        "",
      ].join("\n"),
    );
    await Deno.mkdir(`${tmp}/started`);
    await Deno.mkdir(`${tmp}/net.d`);
    await Deno.writeTextFile(`${tmp}/delay`, "0");
    await Deno.writeTextFile(
      `${tmp}/net.d/slow${run}.conf`,
      JSON.stringify({ cniVersion: "1.0.0", name: `slow${run}`, type: "slowcni" }),
    );
    await k(kube.create(ClusterNetworkResource, {
      metadata: { name: network },
      spec: { NetworkID: `slow${run}`, NetworkType: "slowcni" },
    }));
    // Ready when STATUS says so, as a runtime checks.
    for (let i = 0;; i++) {
      const [st] = await fakelet.status();
      if (st.code === 0) break;
      if (i > 300) fail(`the agent did not become ready: ${st.stdout}\n${await Deno.readTextFile(`${tmp}/agent.log`)}`);
      await sleep(100);
    }
    await body({
      agent,
      fakelet,
      setDelay: (s) => Deno.writeTextFile(`${tmp}/delay`, String(s)),
      pod: async (name) => {
        await k(kube.create(PodResource, {
          metadata: {
            name: `${name}-${run}`,
            namespace: "default",
            annotations: { "danm.io/interfaces": JSON.stringify([{ clusterNetwork: network }]) },
          },
          spec: { nodeName, containers: [{ name: "c", image: "pause" }] },
        }));
        pods.push(`${name}-${run}`);
        return `${name}-${run}`;
      },
      started: async (n) => {
        for (let i = 0; i < 600; i++) {
          if ([...Deno.readDirSync(`${tmp}/started`)].length >= n) return;
          await sleep(25);
        }
        fail(`${n} delegate ADDs did not start`);
      },
    });
  } finally {
    await agent.dispose();
    await fakelet.dispose().catch(() => {});
    for (const p of pods) {
      await Effect.runPromise(
        Effect.ignore(kube.delete(PodResource, p, { namespace: "default", gracePeriodSeconds: 0 })),
      );
    }
    await Effect.runPromise(Effect.ignore(kube.delete(ClusterNetworkResource, network)));
    await Effect.runPromise(Scope.close(scope, Exit.void));
    await bin.dispose();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await cluster.release();
  }
}

/** The CNI error of a failed ADD (code, msg), or undefined when it succeeded. */
async function addOutcome(p: Promise<unknown>): Promise<{ code: number; msg: string } | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (!(e instanceof CniCallFailed)) throw e;
    const j = e.outcome.json as { code?: number; msg?: string } | undefined;
    return { code: j?.code ?? -1, msg: j?.msg ?? e.outcome.stdout };
  }
}

Deno.test("node agent: ADDs beyond --cni-max-concurrent + --cni-max-queue get CNI error 11 at once, the rest complete", async () => {
  await withAgent(
    ["--cni-max-concurrent", "1", "--cni-max-queue", "1"],
    async ({ fakelet, setDelay, pod, started }) => {
      const [a, b, c] = [await pod("a"), await pod("b"), await pod("c")];
      await setDelay(2);
      const first = addOutcome(fakelet.runPod("default", a));
      await started(1);
      // One slot is busy; of the next two, one waits and one is refused.
      const t0 = performance.now();
      const rest = await Promise.all([
        addOutcome(fakelet.runPod("default", b)),
        addOutcome(fakelet.runPod("default", c)),
      ]);
      assertEquals(await first, undefined, "the running ADD completes");
      const refused = rest.filter((r) => r !== undefined);
      assertEquals(refused.length, 1, `exactly one of two ADDs over the bound is refused: ${JSON.stringify(rest)}`);
      assertEquals(refused[0]!.code, 11);
      assertMatch(refused[0]!.msg, /busy: 1 requests in progress and 1 waiting \(limits 1 and 1\)/);
      // The waiting one ran after the first (2 s each), so the refusal did not wait for anything.
      assert(performance.now() - t0 >= 1_500, "the queued ADD waited for the slot");
      // The runtime retries the refused sandbox, which now gets through.
      await setDelay(0);
      const retried = rest[0] === undefined ? c : b;
      assertEquals(await addOutcome(fakelet.runPod("default", retried)), undefined);
    },
  );
});

Deno.test("node agent: SIGTERM lets the running ADD finish, tells the waiting one to retry, then exits 0", async () => {
  await withAgent(
    ["--cni-max-concurrent", "1", "--cni-max-queue", "4", "--cni-drain-timeout", "15s"],
    async ({ agent, fakelet, setDelay, pod, started }) => {
      const [a, b] = [await pod("a"), await pod("b")];
      await setDelay(3);
      const running = addOutcome(fakelet.runPod("default", a));
      await started(1);
      const waiting = addOutcome(fakelet.runPod("default", b));
      await sleep(700); // its thin client is connected and queued by now
      const t0 = performance.now();
      agent.kill("SIGTERM");
      const queued = await waiting;
      assert(queued !== undefined && queued.code === 11, `the waiting ADD is told to retry: ${JSON.stringify(queued)}`);
      assertEquals(await running, undefined, "the running ADD completes during the drain");
      const status = await agent.exited;
      assertEquals(status.code, 0, "a drained agent exits 0");
      const ms = performance.now() - t0;
      assert(ms < 10_000, `exited ${ms.toFixed(0)} ms after SIGTERM`);
      const sandbox = fakelet.sandboxes.get(`default/${a}`);
      assert(sandbox !== undefined, "the drained ADD's sandbox is up");
    },
  );
});

Deno.test("node agent: an ADD still running at --cni-drain-timeout is cut off with CNI error 11 and the agent exits", async () => {
  await withAgent(
    ["--cni-max-concurrent", "2", "--cni-drain-timeout", "1s"],
    async ({ agent, fakelet, setDelay, pod, started }) => {
      const a = await pod("a");
      await setDelay(30);
      const running = addOutcome(fakelet.runPod("default", a));
      await started(1);
      const t0 = performance.now();
      agent.kill("SIGTERM");
      const cut = await running;
      assert(cut !== undefined && cut.code === 11, `the cut-off ADD says to retry: ${JSON.stringify(cut)}`);
      assertMatch(cut.msg, /stopped before this request finished/);
      assertEquals((await agent.exited).code, 0);
      const ms = performance.now() - t0;
      assert(ms < 8_000, `exited ${ms.toFixed(0)} ms after SIGTERM with a 1 s drain bound`);
    },
  );
});
