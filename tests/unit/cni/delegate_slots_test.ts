// The node daemon's bound on delegate plugins running at once (--cni-max-delegates, core/cni/attach/delegate.ts
// DelegateSlots): more ADDs than slots are all admitted, but their delegates wait for a slot, and all complete.
import { Effect } from "effect";
import { defaultNodeConfig } from "../../../core/cni/runtime.ts";
import { assertEquals } from "../../harness/assert.ts";
import {
  binDir,
  cniEnv,
  createNetwork,
  createPod,
  danmConf,
  eventually,
  makeWorld,
  sandbox,
  sleep,
} from "./fixture.ts";

Deno.test("delegate slots: 5 concurrent ADDs with 2 slots run at most 2 delegates at once, the rest wait, all succeed", async () => {
  const w = await makeWorld({ maxConcurrent: 8, maxDelegates: 2 });
  try {
    await createNetwork(w, "DanmNet", "mv", {
      NetworkID: "mvnet",
      NetworkType: "macvlan",
      Options: { host_device: "ens5", cidr: "10.30.0.0/24" },
    });
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
      const pod = await createPod(w, `p${i}`, { "danm.io/interfaces": JSON.stringify([{ network: "mv" }]) });
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

Deno.test("delegate slots: the default bound is below the default request bound (each ADD may run several delegates)", () => {
  const config = defaultNodeConfig({ nodeName: "n" });
  assertEquals([config.maxDelegates, config.maxConcurrent], [8, 32]);
});
