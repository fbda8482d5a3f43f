// danm's addresses handed to the reference `static` IPAM plugin instead of a fakeipam process
// (core/cni/attach/ipamhandoff.ts): when it happens, and every case in which fakeipam must stay.
import { Effect } from "effect";
import { staticForFakeIpam } from "../../../core/cni/attach/ipamhandoff.ts";
import { ProcessNotFound } from "../../../core/ports/process.ts";
import { layerMemoryFs, MemoryFileSystem } from "../../../adapters/fs/memory.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { binDir, cniEnv, createDelegatedNetwork, createPod, danmConf, makeWorld, sandbox } from "./fixture.ts";

const fakeIpam = {
  type: "fakeipam",
  ips: [{ ipcidr: "10.0.0.5/24", version: 4 }, { ipcidr: "fd00::5/64", version: 6 }],
};
const macvlan = { cniVersion: "1.0.0", name: "n", type: "macvlan", master: "ens4", ipam: fakeIpam };
const kubeletArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c";

const handoff = (plugin: Record<string, unknown>, cniArgs = kubeletArgs, withStatic = true) => {
  const fs = new MemoryFileSystem();
  fs.seed({ "/opt/cni/bin/macvlan": "", ...(withStatic ? { "/opt/cni/bin/static": "" } : {}) });
  return Effect.runPromise(
    staticForFakeIpam(plugin, { cniPath: ["/nowhere", "/opt/cni/bin"], cniArgs }).pipe(
      Effect.provide(layerMemoryFs(fs)),
    ),
  );
};

Deno.test("ipam handoff: a reference plugin gets danm's addresses through `static` when it is in CNI_PATH", async () => {
  assertEquals(await handoff(macvlan), {
    ...macvlan,
    ipam: { type: "static", addresses: [{ address: "10.0.0.5/24" }, { address: "fd00::5/64" }] },
  });
  assertEquals((await handoff({ ...macvlan, type: "bridge" }, "")).ipam, {
    type: "static",
    addresses: [{ address: "10.0.0.5/24" }, { address: "fd00::5/64" }],
  });
});

Deno.test("ipam handoff: fakeipam stays wherever `static` could differ or is missing", async () => {
  const unchanged: Array<[string, Record<string, unknown>, string?, boolean?]> = [
    ["no static in CNI_PATH", macvlan, kubeletArgs, false],
    ["a plugin that may read ipam.ips itself", { ...macvlan, type: "sriov" }],
    ["a user's own plugin", { ...macvlan, type: "my-cni" }],
    ["CNI 0.2.0", { ...macvlan, cniVersion: "0.2.0" }],
    ["IP= in CNI_ARGS (static would add it)", macvlan, `${kubeletArgs};IP=10.9.9.9/24`],
    ["GATEWAY= in CNI_ARGS", macvlan, `${kubeletArgs};GATEWAY=10.0.0.1`],
    ["unknown CNI_ARGS without IgnoreUnknown (static refuses them)", macvlan, "K8S_POD_NAME=p"],
    ["args.cni.ips (static would use them instead)", { ...macvlan, args: { cni: { ips: ["10.1.1.1/24"] } } }],
    ["runtimeConfig.ips", { ...macvlan, runtimeConfig: { ips: ["10.1.1.1/24"] } }],
    ["another IPAM", { ...macvlan, ipam: { type: "host-local" } }],
    ['no address (only "none")', { ...macvlan, ipam: { type: "fakeipam", ips: [] } }],
    ["a ticket without a node daemon to redeem it", { ...macvlan, ipam: { type: "fakeipam", ticket: "t" } }],
  ];
  for (const [why, plugin, args, withStatic] of unchanged) {
    assertEquals(await handoff(plugin, args, withStatic), plugin, why);
  }
});

Deno.test("ipam handoff: a delegate started before the reservation gets its addresses from static, not fakeipam", async () => {
  const w = await makeWorld();
  try {
    w.fs.seed({ [`${binDir}/static`]: "" });
    const fakeipamCalls: unknown[] = [];
    const call = w.call;
    Object.assign(w, {
      call: (program: "danm" | "fakeipam", env: Record<string, string>, stdin: unknown) => {
        if (program === "fakeipam") fakeipamCalls.push(stdin);
        return call(program, env, stdin);
      },
    });
    await createDelegatedNetwork(w, { options: { cidr: "10.30.0.0/24", net6: "2001:db8:30::/64" } });
    const pod = await createPod(w, "p", {
      "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic", ip6: "dynamic" }]),
    });
    const sb = sandbox(w);
    const r = await w.call("danm", cniEnv("ADD", sb, pod), danmConf("1.0.0"));
    assertEquals(r.code, 0, r.stdout);
    const [add] = w.process.calls.filter((c) => c.argv[0] === `${binDir}/macvlan` && c.env.CNI_COMMAND === "ADD");
    const conf = JSON.parse(new TextDecoder().decode(add.stdin));
    assertEquals(conf.ipam, {
      type: "static",
      addresses: [{ address: "10.30.0.1/24" }, { address: "2001:db8:30::1/64" }],
    });
    assertEquals(fakeipamCalls, []);
    const result = r.json as { ips: Array<{ address: string }> };
    assertEquals(result.ips.map((i) => i.address), ["10.30.0.1/24", "2001:db8:30::1/64"]);
    // What DEL and CHECK replay stays DANM's form, with the addresses.
    const record = JSON.parse(w.fs.files()[`/run/danm/sandboxes/${sb.containerId}.json`]);
    assertMatch(JSON.stringify(record), /"type":"fakeipam","ips":\[\{"ipcidr":"10\.30\.0\.1\/24"/);
    assertEquals((await w.call("danm", cniEnv("DEL", sb, pod), danmConf("1.0.0"))).code, 0);
  } finally {
    await w.dispose();
  }
});

Deno.test("ipam handoff: the node daemon looks each plugin up in CNI_PATH once, not once per attachment", async () => {
  const w = await makeWorld();
  try {
    w.fs.seed({ [`${binDir}/static`]: "" });
    const looked: string[] = [];
    const exists = w.fs.service.exists;
    Object.assign(w.fs.service, {
      exists: (path: string) => {
        looked.push(path);
        return exists(path);
      },
    });
    await createDelegatedNetwork(w, { options: { cidr: "10.31.0.0/24" } });
    for (const name of ["p1", "p2", "p3"]) {
      const pod = await createPod(w, name, {
        "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]),
      });
      const r = await w.call("danm", cniEnv("ADD", sandbox(w), pod), danmConf("1.0.0"));
      assertEquals(r.code, 0, r.stdout);
    }
    const adds = w.process.calls.filter((c) => c.argv[0] === `${binDir}/macvlan` && c.env.CNI_COMMAND === "ADD");
    assertEquals(adds.length, 3);
    assertEquals(adds.map((c) => JSON.parse(new TextDecoder().decode(c.stdin)).ipam.type), [
      "static",
      "static",
      "static",
    ]);
    assertEquals(looked.filter((p) => p.endsWith("/static")), [`${binDir}/static`]);
    assertEquals(looked.filter((p) => p.endsWith("/macvlan")), [`${binDir}/macvlan`]);
  } finally {
    await w.dispose();
  }
});

Deno.test("ipam handoff: a cached plugin path whose exec fails is looked up again on the next call", async () => {
  const w = await makeWorld();
  try {
    const alt = "/opt/cni/alt";
    const env = (pod: Awaited<ReturnType<typeof createPod>>) => ({
      ...cniEnv("ADD", sandbox(w), pod),
      CNI_PATH: `${binDir}:${alt}`,
    });
    await createDelegatedNetwork(w, { options: { cidr: "10.32.0.0/24" } });
    const annotations = { "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]) };
    assertEquals((await w.call("danm", env(await createPod(w, "p1", annotations)), danmConf("1.0.0"))).code, 0);
    // The plugin moves to the other CNI_PATH directory: exec of the cached path now fails as a missing binary does.
    w.process.register(`${alt}/macvlan`, w.process.registered(`${binDir}/macvlan`)!);
    await w.run(w.fs.service.remove(`${binDir}/macvlan`));
    w.fs.seed({ [`${alt}/macvlan`]: "" });
    const exec = w.process.service.exec;
    Object.assign(w.process.service, {
      exec: (o: Parameters<typeof exec>[0]) =>
        o.argv[0] === `${binDir}/macvlan`
          ? Effect.fail(new ProcessNotFound({ program: o.argv[0], detail: "gone" }))
          : exec(o),
    });
    const p2 = await createPod(w, "p2", annotations);
    const first = await w.call("danm", env(p2), danmConf("1.0.0"));
    assertEquals(first.code !== 0, true, "the exec of the stale path fails");
    const retry = await w.call("danm", env(p2), danmConf("1.0.0"));
    assertEquals(retry.code, 0, retry.stdout);
    const last = w.process.calls.filter((c) => c.argv[0].endsWith("/macvlan")).at(-1)!;
    assertEquals(last.argv[0], `${alt}/macvlan`);
  } finally {
    await w.dispose();
  }
});
