// The node daemon's bound on delegate plugins running at once (--cni-max-delegates, core/cni/attach/slots.ts): more
// ADDs than slots are all admitted, but their delegates wait for a slot, and all complete; the wait does not count
// against the attachment's time limit, and is bounded on its own (CNI error 11).
import { Effect } from "effect";
import { defaultNodeConfig } from "../../../core/cni/runtime.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { eventually } from "../../harness/eventually.ts";
import { binDir, cniEnv, createDelegatedNetwork, createPod, danmConf, makeWorld, sandbox, sleep } from "./fixture.ts";

Deno.test("delegate slots: 5 concurrent ADDs with 2 slots run at most 2 delegates at once, the rest wait, all succeed", async () => {
  const w = await makeWorld({ maxConcurrent: 8, maxDelegates: 2 });
  try {
    await createDelegatedNetwork(w);
    // The fake macvlan, held at its start until released, counting how many run at once.
    let release!: () => void;
    const released = new Promise<void>((r) => release = r);
    let running = 0, peak = 0, started = 0;
    const macvlan = w.process.registered(`${binDir}/macvlan`)!;
    w.process.register(
      `${binDir}/macvlan`,
      (inv) =>
        inv.env.CNI_COMMAND !== "ADD" ? macvlan(inv) : Effect.gen(function* () {
          running++, started++;
          peak = Math.max(peak, running);
          yield* Effect.promise(() => released);
          return yield* macvlan(inv);
        }).pipe(Effect.ensuring(Effect.sync(() => running--))),
    );

    const adds = [];
    for (let i = 0; i < 5; i++) {
      const pod = await createPod(w, `p${i}`, {
        "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]),
      });
      adds.push(w.call("danm", cniEnv("ADD", sandbox(w), pod), danmConf()));
    }
    await eventually(
      "5 ADDs in flight, 2 delegates running and 3 waiting for a slot",
      () =>
        Promise.resolve(
          w.node.metrics.inFlight.get({ command: "ADD" }) === 5 && running === 2 &&
            w.node.metrics.delegatesWaiting.get() === 3
            ? true
            : undefined,
        ),
    );
    await sleep(50);
    assertEquals([running, started], [2, 2]);
    release();
    const answers = await Promise.all(adds);
    assertEquals(answers.map((a) => a.code), [0, 0, 0, 0, 0]);
    assertEquals([peak, started, running, w.node.metrics.delegatesWaiting.get()], [2, 5, 0, 0]);
  } finally {
    await w.dispose();
  }
});

/**
 * A world with one delegate slot, held by a DEL whose macvlan waits until `releaseDel()`; `addB` is an ADD that then
 * waits for the slot.
 */
async function slotHeldByDel(options: { attachTimeoutMs: number; delegateWaitTimeoutMs: number }) {
  const w = await makeWorld({ maxDelegates: 1, ...options });
  await createDelegatedNetwork(w);
  let releaseDel!: () => void;
  const delReleased = new Promise<void>((r) => releaseDel = r);
  let delStarted = false;
  const macvlan = w.process.registered(`${binDir}/macvlan`)!;
  w.process.register(
    `${binDir}/macvlan`,
    (inv) =>
      inv.env.CNI_COMMAND !== "DEL" ? macvlan(inv) : Effect.gen(function* () {
        delStarted = true;
        yield* Effect.promise(() => delReleased);
        return yield* macvlan(inv);
      }),
  );
  const annotations = { "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]) };
  const podA = await createPod(w, "a", annotations), sbA = sandbox(w);
  assertEquals((await w.call("danm", cniEnv("ADD", sbA, podA), danmConf())).code, 0);
  const del = w.call("danm", cniEnv("DEL", sbA, podA), danmConf());
  await eventually("the DEL's macvlan holds the one slot", () => Promise.resolve(delStarted ? true : undefined));
  const podB = await createPod(w, "b", annotations);
  const addB = w.call("danm", cniEnv("ADD", sandbox(w), podB), danmConf());
  await eventually(
    "the ADD's macvlan waits for the slot",
    () => Promise.resolve(w.node.metrics.delegatesWaiting.get() === 1 ? true : undefined),
  );
  return { w, del, addB, releaseDel, podB };
}

Deno.test("delegate slots: waiting for a slot does not count against the attach timeout", async () => {
  const { w, del, addB, releaseDel } = await slotHeldByDel({ attachTimeoutMs: 300, delegateWaitTimeoutMs: 60_000 });
  try {
    // Waiting three times as long as an attachment may take, then the slot frees up.
    await sleep(900);
    releaseDel();
    assertEquals((await del).code, 0);
    const b = await addB;
    assertEquals(b.code, 0, `the ADD that waited completes: ${b.stdout}`);
    assertEquals(w.node.metrics.delegatesWaiting.get(), 0);
  } finally {
    releaseDel();
    await w.dispose();
  }
});

Deno.test("delegate slots: a wait beyond --cni-delegate-wait-timeout fails the ADD with CNI error 11 naming the load", async () => {
  const { w, del, addB, releaseDel, podB } = await slotHeldByDel({
    attachTimeoutMs: 30_000,
    delegateWaitTimeoutMs: 300,
  });
  try {
    const b = await addB;
    const error = JSON.parse(b.stdout) as { code: number; msg: string; details: string };
    assertEquals(error.code, 11, b.stdout);
    assertMatch(
      error.details,
      /no delegate slot free within 300 ms \(1 delegates running, 1 waiting; --cni-max-delegates 1\)/,
    );
    assertEquals(w.node.metrics.delegatesWaiting.get(), 0, "the gauge is back to 0 after the wait ended");
    releaseDel();
    assertEquals((await del).code, 0);
    const retried = await w.call("danm", cniEnv("ADD", sandbox(w), podB), danmConf());
    assertEquals(retried.code, 0, `the runtime's retry gets through: ${retried.stdout}`);
  } finally {
    releaseDel();
    await w.dispose();
  }
});

Deno.test("delegate slots: the default bound is below the default request bound (each ADD may run several delegates)", () => {
  const config = defaultNodeConfig({ nodeName: "n" });
  assertEquals([config.maxDelegates, config.maxConcurrent], [8, 32]);
});
