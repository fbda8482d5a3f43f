// DEL and CHECK without a sandbox record find the sandbox's DanmEps through the informer's index by container ID
// (spec.CID): exactly that sandbox's, never a neighbour's on the same node.
import { Effect } from "effect";
import { DanmEpResource } from "../../../core/api/danm.ts";
import { removeRecord } from "../../../core/cni/state.ts";
import { NetnsRef } from "../../../core/ports/netlink.ts";
import { layerMemoryFs } from "../../../adapters/fs/memory.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { eventually } from "../../harness/eventually.ts";
import { cniEnv, createNetwork, createPod, danmConf, makeWorld, sandbox, type World } from "./fixture.ts";

const endpointCids = async (w: World) =>
  (await Effect.runPromise(w.kube.list(DanmEpResource, { namespace: "default" }))).items.map((ep) => ep.spec.CID)
    .sort();

const dropRecord = (w: World, containerId: string) =>
  Effect.runPromise(Effect.provide(removeRecord("/run/danm/sandboxes", containerId), layerMemoryFs(w.fs)));

Deno.test("CHECK and DEL without a sandbox record act on that sandbox's DanmEps only", async () => {
  const w = await makeWorld();
  try {
    await createNetwork(w, "DanmNet", "int", {
      NetworkID: "int",
      Options: { host_device: "ens4", cidr: "10.10.0.0/24" },
    });
    const interfaces = JSON.stringify([{ network: "int", ip: "dynamic" }]);
    const a = await createPod(w, "pa", { "danm.io/interfaces": interfaces });
    const b = await createPod(w, "pb", { "danm.io/interfaces": interfaces });
    const sa = sandbox(w), sb = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", sa, a), danmConf())).code, 0);
    assertEquals((await w.call("danm", cniEnv("ADD", sb, b), danmConf())).code, 0);
    await dropRecord(w, sa.containerId);
    await dropRecord(w, sb.containerId);
    // CHECK finds a sandbox's DanmEp once the node's cache holds it (the informer trails the write).
    for (const [s, p] of [[sa, a], [sb, b]] as const) {
      await eventually(`CHECK of the intact sandbox ${p.metadata.name}`, async () => {
        const ok = await w.call("danm", cniEnv("CHECK", s, p), danmConf());
        return ok.code === 0 ? ok : undefined;
      });
    }
    // Damage b's pod only: a's CHECK keeps passing, b's names b's interface.
    await w.run(Effect.scoped(Effect.gen(function* () {
      const p = yield* w.netlink.netns(NetnsRef.path(sb.netns));
      yield* p.deleteLink("eth0");
    })));
    assertEquals((await w.call("danm", cniEnv("CHECK", sa, a), danmConf())).code, 0, "a is untouched");
    const brokenB = await w.call("danm", cniEnv("CHECK", sb, b), danmConf());
    assertMatch((brokenB.json as { details: string }).details, /interface eth0 is missing/);

    assertEquals((await w.call("danm", cniEnv("DEL", sa, a), danmConf())).code, 0);
    assertEquals(await endpointCids(w), [sb.containerId], "DEL removed a's DanmEp and left b's");
    // Once the cache has seen the deletion, a has nothing left to CHECK.
    await eventually("a's DanmEp gone from the node's cache", async () => {
      const gone = await w.call("danm", cniEnv("CHECK", sa, a), danmConf());
      return /knows no attachments/.test((gone.json as { msg: string }).msg) ? gone : undefined;
    });
    assertEquals((await w.call("danm", cniEnv("CHECK", sb, b), danmConf())).code, 1, "b still found, still broken");
  } finally {
    await w.dispose();
  }
});
