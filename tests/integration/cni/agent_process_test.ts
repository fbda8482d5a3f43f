// The node agent process under load and on SIGTERM (cmd/netwatcher.ts, started as the DaemonSet runs it, on the real
// apiserver): requests beyond --cni-max-concurrent + --cni-max-queue are answered at once with CNI error 11 ("try
// again later"), a SIGTERM lets running ADDs finish (up to --cni-drain-timeout) while waiting ones are told to retry,
// and past the drain timeout a running ADD is cut off with error 11 too. The pods' delegate is a test plugin that
// holds its ADD until the test opens a gate, so what is in flight when is decided by events, not by how fast a loaded
// machine starts processes; requests go through the real thin `danm` client. The delegate-slot bound
// (--cni-max-delegates) is checked on the same process: the delegate records how many of it run at once.
import { Effect, Exit, Scope } from "effect";
import { ClusterNetworkResource } from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import type { KubeService } from "../../../core/ports/kube.ts";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import { startNodeAgent } from "../../harness/agent.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { makeCniBin } from "../../harness/cnibin.ts";
import { freePort } from "../../harness/proc.ts";
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
    /** Delegate ADDs wait from now on until `open()`. */
    hold: () => Promise<void>;
    /** Lets every waiting and later delegate ADD through. */
    open: () => Promise<void>;
    /** Creates a pod on the network; resolves to its name. */
    pod: (name: string) => Promise<string>;
    /** Resolves once `n` delegate ADDs have started. */
    started: (n: number) => Promise<void>;
    /** How many delegate ADDs have started so far, and the most that ran at once. */
    delegates: () => { started: number; peak: number };
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
    // Marks its start, waits while the gate is closed, answers an empty result (danm tolerates a delegate that makes
    // no link).
    await bin.addPlugin(
      "slowcni",
      [
        "#!/bin/sh",
        "cat >/dev/null",
        `if [ "$CNI_COMMAND" = ADD ]; then touch '${tmp}/started/'"$CNI_CONTAINERID" '${tmp}/running/'"$CNI_CONTAINERID";`,
        // How many ADDs run at this one's start (itself included): the highest of these is the peak concurrency.
        `  ls '${tmp}/running' | wc -l >'${tmp}/peak/'"$CNI_CONTAINERID";`,
        `  while [ -e '${tmp}/closed' ]; do sleep 0.05; done; rm -f '${tmp}/running/'"$CNI_CONTAINERID"; fi`,
        `echo '{"cniVersion":"1.0.0","interfaces":[],"ips":[],"routes":[],"dns":{}}'`,
        "",
      ].join("\n"),
    );
    for (const d of ["started", "running", "peak"]) await Deno.mkdir(`${tmp}/${d}`);
    await Deno.mkdir(`${tmp}/net.d`);
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
      hold: () => Deno.writeTextFile(`${tmp}/closed`, ""),
      open: () => Deno.remove(`${tmp}/closed`).catch(() => {}),
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
      delegates: () => ({
        started: [...Deno.readDirSync(`${tmp}/started`)].length,
        peak: Math.max(
          0,
          ...[...Deno.readDirSync(`${tmp}/peak`)].map((e) => Number(Deno.readTextFileSync(`${tmp}/peak/${e.name}`))),
        ),
      }),
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
async function addOutcome(p: Promise<unknown>): Promise<{ code: number; msg: string; details?: string } | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (!(e instanceof CniCallFailed)) throw e;
    const j = e.outcome.json as { code?: number; msg?: string; details?: string } | undefined;
    return { code: j?.code ?? -1, msg: j?.msg ?? e.outcome.stdout, ...(j?.details ? { details: j.details } : {}) };
  }
}

Deno.test("node agent: ADDs beyond --cni-max-concurrent + --cni-max-queue get CNI error 11 at once, the rest complete", async () => {
  await withAgent(
    ["--cni-max-concurrent", "1", "--cni-max-queue", "1"],
    async ({ fakelet, hold, open, pod, started }) => {
      const [a, b, c] = [await pod("a"), await pod("b"), await pod("c")];
      await hold();
      const first = addOutcome(fakelet.runPod("default", a));
      await started(1);
      // One slot is busy until the gate opens; of the next two, one waits and one is refused at once.
      let openedAt = Infinity;
      const finishedAt: number[] = [];
      const next = [b, c].map((p) =>
        addOutcome(fakelet.runPod("default", p)).then((r) => {
          finishedAt.push(performance.now());
          return r;
        })
      );
      const noAnswer = { code: -1, msg: "no answer within 60 s" };
      let timer: ReturnType<typeof setTimeout> | undefined;
      const refusedFirst = await Promise.race([
        ...next,
        new Promise<typeof noAnswer>((r) => timer = setTimeout(() => r(noAnswer), 60_000)),
      ]);
      clearTimeout(timer);
      assert(
        refusedFirst !== undefined && refusedFirst !== noAnswer,
        `with the slot held, one of the two is refused at once: ${JSON.stringify(refusedFirst)}`,
      );
      openedAt = performance.now();
      await open();
      const rest = await Promise.all(next);
      assertEquals(await first, undefined, "the running ADD completes");
      const refused = rest.filter((r) => r !== undefined);
      assertEquals(refused.length, 1, `exactly one of two ADDs over the bound is refused: ${JSON.stringify(rest)}`);
      assertEquals(refused[0]!.code, 11);
      assertMatch(refused[0]!.msg, /busy: 1 requests in progress and 1 waiting \(limits 1 and 1\)/);
      assert(Math.max(...finishedAt) >= openedAt, "the queued ADD waited for the slot");
      // The runtime retries the refused sandbox, which now gets through.
      const retried = rest[0] === undefined ? c : b;
      assertEquals(await addOutcome(fakelet.runPod("default", retried)), undefined);
    },
  );
});

Deno.test("node agent: SIGTERM lets the running ADD finish, tells the waiting one to retry, then exits 0", async () => {
  await withAgent(
    ["--cni-max-concurrent", "1", "--cni-max-queue", "4", "--cni-drain-timeout", "120s"],
    async ({ agent, fakelet, hold, open, pod, started }) => {
      const [a, b] = [await pod("a"), await pod("b")];
      await hold();
      const running = addOutcome(fakelet.runPod("default", a));
      await started(1);
      const waiting = addOutcome(fakelet.runPod("default", b));
      // The waiting ADD is queued behind the held one; its thin client may still be starting on a loaded machine, and
      // a request that arrives after SIGTERM is told to retry too: either way it must not run.
      await sleep(700);
      let exited = false;
      agent.exited.then(() => exited = true);
      agent.kill("SIGTERM");
      const queued = await waiting;
      assert(queued !== undefined && queued.code === 11, `the waiting ADD is told to retry: ${JSON.stringify(queued)}`);
      await sleep(500);
      assert(!exited, "the agent waits for the running ADD instead of exiting");
      const t0 = performance.now();
      await open();
      assertEquals(await running, undefined, "the running ADD completes during the drain");
      const status = await agent.exited;
      assertEquals(status.code, 0, "a drained agent exits 0");
      // Well inside the 120 s drain bound: the agent left because nothing was running any more, not at the bound.
      const ms = performance.now() - t0;
      assert(ms < 60_000, `exited ${ms.toFixed(0)} ms after the running ADD was let through`);
      const sandbox = fakelet.sandboxes.get(`default/${a}`);
      assert(sandbox !== undefined, "the drained ADD's sandbox is up");
    },
  );
});

Deno.test("node agent: an ADD still running at --cni-drain-timeout is cut off with CNI error 11 and the agent exits", async () => {
  await withAgent(
    ["--cni-max-concurrent", "2", "--cni-drain-timeout", "1s"],
    async ({ agent, fakelet, hold, pod, started }) => {
      const a = await pod("a");
      await hold(); // never opened: only the drain bound can end this ADD
      const running = addOutcome(fakelet.runPod("default", a));
      await started(1);
      const t0 = performance.now();
      agent.kill("SIGTERM");
      const cut = await running;
      assert(cut !== undefined && cut.code === 11, `the cut-off ADD says to retry: ${JSON.stringify(cut)}`);
      assertMatch(cut.msg, /stopped before this request finished/);
      assertEquals((await agent.exited).code, 0);
      const ms = performance.now() - t0;
      assert(ms < 30_000, `exited ${ms.toFixed(0)} ms after SIGTERM with a 1 s drain bound and an ADD that never ends`);
    },
  );
});

Deno.test("node agent: --cni-max-delegates 2 runs at most 2 delegates at once, the others wait (danm_cni_delegates_waiting), all complete", async () => {
  const port = freePort();
  await withAgent(
    ["--cni-max-delegates", "2", "--metrics-port", String(port)],
    async ({ fakelet, hold, open, pod, started, delegates }) => {
      const names = [];
      for (const n of ["a", "b", "c", "d", "e"]) names.push(await pod(n));
      const waitingGauge = async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return Number(/^danm_cni_delegates_waiting(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? NaN);
      };
      // The metrics server starts beside the CNI socket, maybe just after STATUS answered.
      for (let i = 0;; i++) {
        const gauge = await waitingGauge().catch(() => undefined);
        if (gauge !== undefined) {
          assertEquals(gauge, 0);
          break;
        }
        if (i > 600) fail(`the agent's /metrics on port ${port} does not answer`);
        await sleep(50);
      }
      await hold();
      const adds = names.map((p) => addOutcome(fakelet.runPod("default", p)));
      await started(2);
      // The other three ADDs reach the daemon (their thin clients may start slowly) and wait for a slot.
      for (let i = 0;; i++) {
        if (await waitingGauge() === 3) break;
        if (i > 1200) fail(`danm_cni_delegates_waiting never reached 3: ${await waitingGauge()}`);
        await sleep(50);
      }
      assertEquals(delegates(), { started: 2, peak: 2 }, "two delegates run, held; no third started");
      await open();
      assertEquals(await Promise.all(adds), [undefined, undefined, undefined, undefined, undefined]);
      assertEquals(delegates(), { started: 5, peak: 2 }, "the waiting three ran, never more than two at once");
      assertEquals(await waitingGauge(), 0);
    },
  );
});

Deno.test("node agent: an ADD waiting for a delegate slot past --cni-delegate-wait-timeout gets CNI error 11; its retry passes", async () => {
  await withAgent(
    ["--cni-max-delegates", "1", "--cni-delegate-wait-timeout", "1s"],
    async ({ fakelet, hold, open, pod, started, delegates }) => {
      const a = await pod("a"), b = await pod("b");
      await hold();
      const first = addOutcome(fakelet.runPod("default", a));
      await started(1); // a holds the only slot until open()
      const t0 = performance.now();
      const waited = await addOutcome(fakelet.runPod("default", b));
      const ms = performance.now() - t0;
      assert(waited !== undefined && waited.code === 11, `the waiting ADD says to retry: ${JSON.stringify(waited)}`);
      assertMatch(`${waited.msg} ${waited.details}`, /no delegate slot free within 1000 ms .*--cni-max-delegates 1/);
      assert(ms < 30_000, `answered ${ms.toFixed(0)} ms after it started, with a 1 s wait bound`);
      assertEquals(delegates(), { started: 1, peak: 1 }, "b's delegate never started");
      await open();
      assertEquals(await first, undefined);
      assertEquals(await addOutcome(fakelet.runPod("default", b)), undefined, "the retry, with the slot free, passes");
      assertEquals(delegates(), { started: 2, peak: 1 });
    },
  );
});
