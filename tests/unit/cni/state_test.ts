// The sandbox records' one read path (core/cni/state.ts): the daemon's own reads (`readRecord`: DEL, CHECK, GC) and
// the policy controller's (`localSandboxes`, core/cni/policy.ts) find a record where `writeRecord` put it and decode
// it the same way; an unreadable record is skipped by both, and only the daemon's read logs it.
import { Effect, Layer, Logger } from "effect";
import { layerMemoryFs, MemoryFileSystem } from "../../../adapters/fs/memory.ts";
import { jsonLogger } from "../../../adapters/cli/logging.ts";
import { localSandboxes } from "../../../core/cni/policy.ts";
import {
  decodeRecord,
  readRecord,
  readRecordText,
  removeRecord,
  type SandboxRecord,
  writeRecord,
} from "../../../core/cni/state.ts";
import type { Fs } from "../../../core/ports/filesystem.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";

const dir = "/run/danm/sandboxes";
const node = "node-a";

const record = (containerId: string, overrides: Partial<SandboxRecord> = {}): SandboxRecord => ({
  containerId,
  netns: `/var/run/netns/${containerId}`,
  node,
  created: "2026-12-08T00:00:00Z",
  pod: { namespace: "ns1", name: `pod-${containerId}`, uid: `uid-${containerId}` },
  cniPath: ["/opt/cni/bin"],
  cniArgs: `K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod-${containerId}`,
  phase: "ready",
  attachments: [
    {
      index: 0,
      ifName: "eth0",
      network: { kind: "DanmNet", namespace: "ns1", name: "prim", uid: "u0" },
      networkType: "ipvlan",
      backend: "ipvlan",
      addresses: ["10.0.0.5/24"],
    },
    {
      index: 1,
      ifName: "net1",
      network: { kind: "ClusterNetwork", name: "data", uid: "u1" },
      networkType: "ipvlan",
      backend: "ipvlan",
      addresses: ["10.1.0.5/24", "fd00::5/64"],
    },
  ],
  ...overrides,
});

/** Runs `program` on `fs`, collecting what it logs. */
const run = <A, E>(fs: MemoryFileSystem, program: Effect.Effect<A, E, Fs>) => {
  const logs: string[] = [];
  const value = Effect.runPromise(
    program.pipe(
      Effect.provide(Layer.mergeAll(layerMemoryFs(fs), Logger.layer([jsonLogger((l) => logs.push(l))]))),
    ),
  );
  return value.then((v) => ({ value: v, logs }));
};

Deno.test("sandbox records: what writeRecord wrote, readRecordText finds and decodeRecord gives back", async () => {
  const fs = new MemoryFileSystem();
  const r = record("abc");
  await run(fs, writeRecord(dir, r));
  const { value: text } = await run(fs, readRecordText(dir, "abc"));
  assertEquals(text, fs.files()[`${dir}/abc.json`], "the file writeRecord wrote, by the same path");
  assert(text !== undefined);
  assertEquals(await Effect.runPromise(decodeRecord(text)), r);
  assertEquals((await run(fs, readRecord(dir, "abc"))).value, r);
  assertEquals((await run(fs, readRecordText(dir, "missing"))).value, undefined);
  assertEquals((await run(fs, readRecord(dir, "missing"))).value, undefined);
});

Deno.test("sandbox records: a text that is not a record fails decodeRecord; readRecord ignores it and logs why", async () => {
  const notJson = await Effect.runPromise(Effect.flip(decodeRecord("{ half")));
  assertMatch(String(notJson), /JSON|Expected|Unexpected/);
  const notARecord = await Effect.runPromise(Effect.flip(decodeRecord(JSON.stringify({ containerId: "x" }))));
  assertMatch(String(notARecord), /netns|Missing|missing/);
  const badPhase = JSON.stringify({ ...record("x"), phase: "half" });
  await Effect.runPromise(Effect.flip(decodeRecord(badPhase)));

  const fs = new MemoryFileSystem().seed({ [`${dir}/bad.json`]: "{ half" });
  const { value, logs } = await run(fs, readRecord(dir, "bad"));
  assertEquals(value, undefined);
  assertEquals(logs.length, 1, logs.join("\n"));
  assertMatch(logs[0], /sandbox record bad is unreadable and ignored/);
});

Deno.test("sandbox records: a path that cannot be read (a directory) is a SandboxStateError, not a missing record", async () => {
  const fs = new MemoryFileSystem().seed({ [`${dir}/dir.json/inner`]: "" });
  const error = await run(fs, Effect.flip(readRecordText(dir, "dir")));
  assertEquals(error.value._tag, "SandboxStateError");
  assertEquals(error.value.operation, "read");
  assertEquals(error.value.containerId, "dir");
});

Deno.test("localSandboxes: this node's finished records, by the records' own path and decoding, re-read when they change", async () => {
  const fs = new MemoryFileSystem();
  await run(fs, writeRecord(dir, record("ready1")));
  await run(fs, writeRecord(dir, record("adding", { phase: "adding" })));
  await run(fs, writeRecord(dir, record("elsewhere", { node: "node-b" })));
  fs.seed({ [`${dir}/garbage.json`]: "not json", [`${dir}/notes.txt`]: "not a record" });
  const sandboxes = localSandboxes(dir, node);

  const first = await run(fs, sandboxes);
  assertEquals(first.value, [{
    pod: { namespace: "ns1", name: "pod-ready1", uid: "uid-ready1" },
    netns: "/var/run/netns/ready1",
    created: "2026-12-08T00:00:00Z",
    attachments: [
      { network: "DanmNet:ns1/prim", ifName: "eth0", v4: ["10.0.0.5"], v6: [] },
      { network: "ClusterNetwork:data", ifName: "net1", v4: ["10.1.0.5"], v6: ["fd00::5"] },
    ],
  }]);
  assertEquals(first.logs, [], "the controller's read skips an unreadable record silently (the daemon logs it)");

  // The ADD finishes: the same record, now ready, is picked up on the next read; a DEL removes another.
  await run(fs, writeRecord(dir, record("adding")));
  await run(fs, removeRecord(dir, "ready1"));
  const second = await run(fs, sandboxes);
  assertEquals(second.value.map((s) => s.netns), ["/var/run/netns/adding"]);
});
