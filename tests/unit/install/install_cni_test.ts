import { Effect } from "effect";
import { layerLiveFs } from "../../../adapters/fs/live.ts";
import { layerMemoryFs, MemoryFileSystem } from "../../../adapters/fs/memory.ts";
import { parseCniConfig } from "../../../core/api/cniconfig.ts";
import { installCni } from "../../../core/install/cni.ts";
import { Fs } from "../../../core/ports/filesystem.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";

Deno.test("installer copies compiled binaries (0755) and writes a 00-danm.conflist danm decodes", async () => {
  // An earlier installer's 00-danm.conf would sort first and win: it goes.
  const mem = new MemoryFileSystem().seed({
    "/dist/danm": "ELF-danm",
    "/dist/fakeipam": "ELF-fakeipam",
    "/etc/cni/net.d/00-danm.conf": "{}",
  });
  const report = await Effect.runPromise(Effect.provide(
    installCni({
      binDir: "/opt/cni/bin",
      confDir: "/etc/cni/net.d",
      compiledDir: "/dist",
      config: { name: "danm_meta_cni", kubeconfig: "/etc/danm/kubeconfig", namingScheme: "legacy" },
    }),
    layerMemoryFs(mem),
  ));
  assertEquals(report.binaries.map((b) => [b.program, b.kind]), [["danm", "compiled"], ["fakeipam", "compiled"]]);
  const check = Effect.gen(function* () {
    const fs = yield* Fs;
    return {
      danm: yield* fs.readText("/opt/cni/bin/danm"),
      mode: (yield* fs.stat("/opt/cni/bin/danm")).mode & 0o777,
      conf: yield* fs.readText("/etc/cni/net.d/00-danm.conflist"),
      previous: yield* fs.exists("/etc/cni/net.d/00-danm.conf"),
    };
  });
  const got = await Effect.runPromise(Effect.provide(check, layerMemoryFs(mem)));
  assertEquals(got.danm, "ELF-danm");
  assertEquals(got.mode, 0o755);
  assertEquals(got.previous, false);
  // A list: runtimes whose libcni knows `cniVersions` pick 1.1.0, older ones (containerd 1.6/1.7) use cniVersion.
  const list = JSON.parse(got.conf);
  assertEquals([list.cniVersion, list.cniVersions, list.name], [
    "1.0.0",
    ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    "danm_meta_cni",
  ]);
  // What such a runtime hands the plugin: the list's entry with the list's name and the version it chose.
  const conf = await Effect.runPromise(
    parseCniConfig(JSON.stringify({ ...list.plugins[0], name: list.name, cniVersion: "1.0.0" }), "00-danm.conflist"),
  );
  assertEquals([conf.type, conf.kubeconfig, conf.namingScheme], ["danm", "/etc/danm/kubeconfig", "legacy"]);
});

Deno.test("installer refuses launcher paths a shell would interpret, and missing binaries without a launcher", async () => {
  const bad = await Effect.runPromise(Effect.flip(Effect.provide(
    installCni({
      binDir: "/b",
      confDir: "/c",
      launcher: { deno: "/usr/bin/deno; rm -rf /", repo: "/repo" },
      config: { name: "x" },
    }),
    layerMemoryFs(new MemoryFileSystem()),
  )));
  assertEquals(bad._tag, "InstallError");
  const none = await Effect.runPromise(Effect.flip(Effect.provide(
    installCni({ binDir: "/b", confDir: "/c", config: { name: "x" } }),
    layerMemoryFs(new MemoryFileSystem()),
  )));
  assert(none.message.includes("no compiled binary"), none.message);
});

Deno.test("a launcher installed on the real filesystem runs the danm client (VERSION)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-install-" });
  try {
    const report = await Effect.runPromise(Effect.provide(
      installCni({
        binDir: `${dir}/bin`,
        confDir: `${dir}/net.d`,
        launcher: { deno: Deno.execPath(), repo: repoRoot },
        config: { name: "danm_meta_cni" },
      }),
      layerLiveFs,
    ));
    assertEquals(report.binaries.map((b) => b.kind), ["launcher", "launcher"]);
    const child = new Deno.Command(`${dir}/bin/danm`, {
      env: { CNI_COMMAND: "VERSION" },
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode('{"cniVersion":"0.4.0"}'));
    await w.close();
    const out = await child.output();
    assertEquals(out.code, 0);
    assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), {
      cniVersion: "0.4.0",
      supportedVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
