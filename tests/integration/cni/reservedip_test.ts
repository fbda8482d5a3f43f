// ReservedIP (danm-spec Appendix A) on the real apiserver: danm's webhook admits and refuses it there, and the node
// agent's IPAM honours it — dynamic ADDs through the real bridge plugin and fakeipam never get the kept address, a
// pod naming it gets it, and the ReservedIP cannot be deleted while that pod holds it.
import { Effect } from "effect";
import { ipBlockResource } from "../../../core/api/ipam.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { CniCallFailed } from "../../harness/fakelet.ts";
import { run } from "../../harness/proc.ts";
import { messageOf, startTestWebhook } from "../webhook/support.ts";
import { startCniNode } from "./support.ts";

const sanitize = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "ReservedIP: admitted by the webhook on the real apiserver; dynamic ADDs skip the address, a pod naming it " +
    "gets it; not deletable while that pod holds it",
  ...sanitize,
  fn: async () => {
    const w = await startTestWebhook();
    const r = crypto.randomUUID().slice(0, 6);
    const cniDir = await Deno.makeTempDir({ prefix: "danm-rip-" });
    let node: Awaited<ReturnType<typeof startCniNode>> | undefined;
    try {
      // A bridge network whose addresses danm's IPAM gives (fakeipam), with a pool of three.
      await Deno.writeTextFile(
        `${cniDir}/rb${r}.conf`,
        JSON.stringify({ cniVersion: "1.0.0", name: `rb${r}`, type: "bridge", bridge: `crb${r}` }),
      );
      const network = `rb-${r}`;
      await w.mustCreate("DanmNet", {
        metadata: { name: network },
        spec: {
          NetworkID: `rb${r}`,
          NetworkType: "bridge",
          Options: { cidr: "10.232.0.0/24", allocation_pool: { start: "10.232.0.10", end: "10.232.0.12" } },
        },
      });
      const keep = `keep-${r}`;
      await w.mustCreate("ReservedIP", {
        metadata: { name: keep },
        spec: { network: { name: network, type: "DanmNet" }, ips: [{ address: "10.232.0.11" }] },
      });
      for (
        const [address, re] of [
          ["10.232.0.11", new RegExp(`10\\.232\\.0\\.11 is already kept by ReservedIP default/${keep}`)],
          ["10.233.0.1", /10\.233\.0\.1 is not inside cidr 10\.232\.0\.0\/24/],
        ] as const
      ) {
        const refused = await w.create("ReservedIP", {
          metadata: { name: `bad-${r}` },
          spec: { network: { name: network, type: "DanmNet" }, ips: [{ address }] },
        });
        assertEquals(refused.status, 403, messageOf(refused));
        assertMatch(messageOf(refused), re);
      }

      // The node agent starts with the ReservedIP in its cache.
      node = await startCniNode({ cniDir });
      const n = node;
      const add = async (name: string, ip: string) => {
        await n.createPod(name, { "danm.io/interfaces": JSON.stringify([{ network, ip }]) });
        return await n.fakelet.runPod("default", name);
      };
      const addressOf = async (netnsName: string) =>
        JSON.parse(await run(["ip", "-n", netnsName, "-json", "addr", "show", "eth0"]))[0].addr_info
          .filter((a: { family: string }) => a.family === "inet").map((a: { local: string }) => a.local);
      const a = await add(`a-${r}`, "dynamic"), b = await add(`b-${r}`, "dynamic");
      assertEquals([await addressOf(a.netnsName), await addressOf(b.netnsName)], [["10.232.0.10"], ["10.232.0.12"]]);
      const full = await add(`c-${r}`, "dynamic").then(() => undefined, (e) => e);
      assert(full instanceof CniCallFailed, `a third dynamic pod must fail: ${full}`);
      assertMatch(full.message, /no free IPv4 address left in the allocation pool/);
      const d = await add(`d-${r}`, "10.232.0.11");
      assertEquals(await addressOf(d.netnsName), ["10.232.0.11"], "the kept address, asked for by name");

      const held = await w.remove("ReservedIP", keep);
      assertEquals(held.status, 403, messageOf(held));
      assertMatch(
        messageOf(held),
        new RegExp(`10\\.232\\.0\\.11 is in use by pod default/d-${r} \\(interface eth0\\)`),
      );
      await n.fakelet.stopPod("default", `d-${r}`);
      const gone = await w.remove("ReservedIP", keep);
      assertEquals(gone.status, 200, messageOf(gone));
      for (const p of [`a-${r}`, `b-${r}`]) await n.fakelet.stopPod("default", p);
      const blocks = await Effect.runPromise(n.kube.list(ipBlockResource));
      const left = blocks.items.filter((x) => x.spec.network.name === network);
      assertEquals(left.map((x) => Object.keys(x.spec.reservations).length), [], "no reservation left");
    } finally {
      await node?.dispose();
      await run(["ip", "link", "del", `crb${r}`]).catch(() => {});
      await w.close();
      await Deno.remove(cniDir, { recursive: true }).catch(() => {});
    }
  },
});
