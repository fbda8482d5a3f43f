// The CNI version matrix on the in-memory layers: every verb under 0.3.1, 0.4.0, 1.0.0 and 1.1.0 answers in a
// shape the spec of that version allows (checked by a strict validator: unknown keys are errors), and errors are
// CNI error JSON with a non-zero exit code. fakeipam likewise.
import { Effect } from "effect";
import { type CniError, decodeResult, supportedVersions } from "../../../core/cni/protocol.ts";
import { decodeNetConf } from "../../../core/cni/netconf.ts";
import { NetnsRef } from "../../../core/ports/netlink.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { validateError, validateResult } from "./spec.ts";
import {
  type CniAnswer,
  cniEnv,
  createNetwork,
  createPod,
  danmConf,
  getOutage,
  makeWorld,
  sandbox,
  type World,
} from "./fixture.ts";

const emptySuccess = (a: CniAnswer, what: string) => {
  assertEquals(a.code, 0, `${what}: ${a.stdout}`);
  assertEquals(a.stdout, "", `${what} prints nothing`);
};

async function setup(w: World) {
  await createNetwork(w, "DanmNet", "int", {
    NetworkID: "int",
    Options: { host_device: "ens4", cidr: "10.10.0.0/24", net6: "2001:db8:10::/64" },
  });
  await createNetwork(w, "DanmNet", "mv", {
    NetworkID: "mv",
    NetworkType: "macvlan",
    Options: { host_device: "ens6", cidr: "10.30.0.0/24" },
  });
}

for (const version of supportedVersions) {
  Deno.test(`CNI ${version}: ADD, CHECK, DEL, GC, STATUS, VERSION answer as the ${version} spec says`, async () => {
    const w = await makeWorld();
    try {
      await setup(w);
      const pod = await createPod(w, `p-${version.replaceAll(".", "")}`, {
        "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic", ip6: "dynamic" }, {
          network: "mv",
          ip: "dynamic",
        }]),
      });
      const sb = sandbox(w);
      const conf = danmConf(version);
      const add = await w.call("danm", cniEnv("ADD", sb, pod), conf);
      assertEquals(add.code, 0, add.stdout);
      validateResult(add.json, version);
      const result = add.json as { interfaces: unknown[]; ips: unknown[] };
      assertEquals(result.interfaces.length, 2);
      assertEquals(result.ips.length, 3);
      const withPrev = version === "0.3.1" ? conf : { ...conf, prevResult: add.json };

      const check = await w.call("danm", cniEnv("CHECK", sb, pod), withPrev);
      if (version === "0.3.1") validateError(check, 1);
      else emptySuccess(check, "CHECK");

      const gc = await w.call("danm", cniEnv("GC", undefined), {
        ...conf,
        "cni.dev/valid-attachments": [{ containerID: sb.containerId, ifname: "eth0" }],
      });
      const status = await w.call("danm", cniEnv("STATUS", undefined), conf);
      if (version === "1.1.0") {
        emptySuccess(gc, "GC");
        emptySuccess(status, "STATUS");
      } else {
        validateError(gc, 1);
        validateError(status, 1);
      }

      const v = await w.call("danm", cniEnv("VERSION", undefined), { cniVersion: version });
      assertEquals(v.json, { cniVersion: version, supportedVersions: [...supportedVersions] });

      emptySuccess(await w.call("danm", cniEnv("DEL", sb, pod), withPrev), "DEL");
      emptySuccess(await w.call("danm", cniEnv("DEL", sb, pod), withPrev), "second DEL");

      // fakeipam in this version.
      const fake = await w.call("fakeipam", {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: "x",
        CNI_NETNS: "/x",
        CNI_IFNAME: "eth1",
      }, {
        cniVersion: version,
        name: "n",
        type: "macvlan",
        ipam: {
          type: "fakeipam",
          ips: [{ ipcidr: "10.1.0.5/24", version: 4 }, { ipcidr: "2001:db8::5/64", version: 6 }],
        },
      });
      assertEquals(fake.code, 0, fake.stdout);
      validateResult(fake.json, version);
      assertEquals((fake.json as { ips: Array<{ address: string }> }).ips.map((i) => i.address), [
        "10.1.0.5/24",
        "2001:db8::5/64",
      ]);
    } finally {
      await w.dispose();
    }
  });
}

Deno.test("CNI errors: unsupported version, bad environment, unreadable stdin, CNI_ARGS without the pod", async () => {
  const w = await makeWorld();
  try {
    await setup(w);
    const pod = await createPod(w, "perr", { "danm.io/interfaces": JSON.stringify([{ network: "int" }]) });
    const sb = sandbox(w);
    validateError(await w.call("danm", cniEnv("ADD", sb, pod), danmConf("0.2.0")), 1);
    const { CNI_NETNS: _n, ...noNetns } = cniEnv("ADD", sb, pod);
    validateError(await w.call("danm", noNetns, danmConf()), 4);
    validateError(await w.call("danm", cniEnv("ADD", sb, pod), "{not json"), 6);
    validateError(await w.call("danm", cniEnv("ADD", sb, pod), { cniVersion: "1.0.0", name: "x", type: "bridge" }), 7);
    validateError(await w.call("danm", { ...cniEnv("ADD", sb), CNI_ARGS: "IgnoreUnknown=1" }, danmConf()), 4);
    validateError(await w.call("danm", cniEnv("GC", undefined), danmConf()), 7); // no valid-attachments
    const gone = { containerId: "nonsuch", netns: "/run/netns/nonsuch" };
    validateError(await w.call("danm", cniEnv("ADD", gone, pod), danmConf()), 4);
    assertEquals(Object.keys(w.fs.files()).filter((f) => f.includes("nonsuch")), [], "no record left behind");
    const malformed = await Effect.runPromise(w.node.handle({ program: "rm -rf", env: {}, stdin: "" }));
    assertEquals(malformed.code, 1);
  } finally {
    await w.dispose();
  }
});

// Found by `deno task fuzz` (cni-result, cni-stdin-*): String() of a cniVersion object whose "toString" is no
// function threw inside decodeResult; errors about the version and prevResult did not name the field.
Deno.test("CNI decoding: odd cniVersion values and a bad prevResult are typed errors naming the field", () => {
  const run = <A>(e: Effect.Effect<A, CniError>) => Effect.runSync(Effect.flip(e));
  const odd = run(decodeResult(JSON.parse('{"cniVersion":{"toString":1},"ips":"x"}')));
  assertEquals(odd.code, 6);
  const conf = (v: unknown, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cniVersion: v, name: "n", type: "danm", ...extra });
  assertMatch(run(decodeNetConf(conf("9.9.9"), "ADD")).msg, /^cniVersion "9.9.9" is not supported/);
  const prev = run(decodeNetConf(conf("1.0.0", { prevResult: true }), "DEL"));
  assertMatch(prev.msg, /^prevResult: cannot decode a plugin result/);
});

Deno.test("fakeipam: no addresses is an error, DEL/CHECK do nothing, VERSION answers", async () => {
  const w = await makeWorld();
  try {
    const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "x", CNI_NETNS: "/x", CNI_IFNAME: "eth1" };
    const none = await w.call("fakeipam", env, {
      cniVersion: "1.0.0",
      name: "n",
      type: "macvlan",
      ipam: { type: "fakeipam" },
    });
    validateError(none, 7);
    assertMatch((none.json as { msg: string }).msg, /No IP was passed to fake IPAM/);
    validateError(
      await w.call("fakeipam", env, { cniVersion: "1.0.0", ipam: { type: "fakeipam", ips: [{ ipcidr: "10.0.0.1" }] } }),
      7,
    );
    // A ticket no ADD issued (a replayed configuration): an error, not a wait.
    const stale = await w.call("fakeipam", env, {
      cniVersion: "1.0.0",
      ipam: { type: "fakeipam", ticket: "00000000-0000-0000-0000-000000000000" },
    });
    validateError(stale, 11);
    assertMatch((stale.json as { details: string }).details, /no address reservation is pending under ticket/);
    emptySuccess(await w.call("fakeipam", { ...env, CNI_COMMAND: "DEL" }, { cniVersion: "1.0.0", ipam: {} }), "DEL");
    emptySuccess(
      await w.call("fakeipam", { ...env, CNI_COMMAND: "CHECK" }, { cniVersion: "1.0.0", ipam: {} }),
      "CHECK",
    );
    const v = await w.call("fakeipam", { CNI_COMMAND: "VERSION" }, { cniVersion: "0.4.0" });
    assertEquals((v.json as { cniVersion: string }).cniVersion, "0.4.0");
  } finally {
    await w.dispose();
  }
});

Deno.test("CHECK fails after out-of-band damage, naming what is missing", async () => {
  const w = await makeWorld();
  try {
    await setup(w);
    const pod = await createPod(w, "pchk", {
      "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }, { network: "mv", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    const add = await w.call("danm", cniEnv("ADD", sb, pod), danmConf("1.0.0"));
    assertEquals(add.code, 0, add.stdout);
    const conf = { ...danmConf("1.0.0"), prevResult: add.json };
    emptySuccess(await w.call("danm", cniEnv("CHECK", sb, pod), conf), "CHECK before damage");
    await w.run(Effect.scoped(Effect.gen(function* () {
      const p = yield* w.netlink.netns(NetnsRef.path(sb.netns));
      yield* p.deleteAddress("eth0", "10.10.0.1/24");
    })));
    const broken = await w.call("danm", cniEnv("CHECK", sb, pod), conf);
    validateError(broken, 100);
    assertMatch((broken.json as { details: string }).details, /address 10\.10\.0\.1\/24 is missing on eth0/);
    await w.run(Effect.scoped(Effect.gen(function* () {
      const p = yield* w.netlink.netns(NetnsRef.path(sb.netns));
      yield* p.deleteLink("eth1");
    })));
    const worse = await w.call("danm", cniEnv("CHECK", sb, pod), conf);
    assertMatch((worse.json as { details: string }).details, /interface eth1 is missing/);
  } finally {
    await w.dispose();
  }
});

Deno.test("STATUS is 50 (not available) while the apiserver is unreachable, 0 again once it is back", async () => {
  const outage = getOutage();
  const w = await makeWorld({ statusProbeTtlMs: 0, wrapKube: outage.wrapKube });
  try {
    emptySuccess(await w.call("danm", cniEnv("STATUS", undefined), danmConf()), "STATUS");
    outage.down = true;
    const s = await w.call("danm", cniEnv("STATUS", undefined), danmConf());
    validateError(s, 50);
    assertMatch((s.json as { details: string }).details, /injected outage/);
    outage.down = false;
    emptySuccess(await w.call("danm", cniEnv("STATUS", undefined), danmConf()), "STATUS after recovery");
  } finally {
    await w.dispose();
  }
});
