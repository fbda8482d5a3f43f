// The Process contract against real programs (the live layer) and against registered fakes (the memory twin).
import { Effect } from "effect";
import { layerLiveProcess } from "../../../adapters/process/live.ts";
import { layerMemoryProcess, MemoryProcess } from "../../../adapters/process/memory.ts";
import { processContract } from "../../contract/process.ts";

processContract("live process", async () => {
  const cwd = await Deno.realPath(await Deno.makeTempDir({ prefix: "danm-proc-" }));
  return {
    layer: layerLiveProcess,
    cwd,
    programs: {
      cat: ["/bin/cat"],
      env: ["/usr/bin/env"],
      pwd: ["/bin/pwd"],
      args: ["/usr/bin/printf", "%s\\n"],
      // Fixed scripts; the exit code is a positional argument, never spliced into the script.
      fail: ["/bin/sh", "-c", 'echo boom >&2; exit "$1"', "fail"],
      sleep: ["/bin/sleep", "60"],
      stubborn: ["/bin/sh", "-c", "trap '' TERM; while :; do :; done"],
    },
    release: () => Deno.remove(cwd, { recursive: true }),
  };
});

processContract("memory process", () => {
  const fake = new MemoryProcess()
    .register("/fake/cat", (i) => Effect.succeed({ stdout: i.stdin }))
    .register(
      "/fake/env",
      (i) => Effect.succeed({ stdout: Object.entries(i.env).map(([k, v]) => `${k}=${v}\n`).join("") }),
    )
    .register("/fake/pwd", (i) => Effect.succeed({ stdout: `${i.cwd ?? "/"}\n` }))
    .register("/fake/args", (i) => Effect.succeed({ stdout: i.argv.slice(1).map((a) => `${a}\n`).join("") }))
    .register("/fake/fail", (i) => Effect.succeed({ code: Number(i.argv[1]), stderr: "boom\n" }))
    .register("/fake/sleep", () => Effect.as(Effect.sleep("60 seconds"), {}))
    .register("/fake/stubborn", () => Effect.never);
  return Promise.resolve({
    layer: layerMemoryProcess(fake),
    cwd: "/var/run/danm",
    programs: {
      cat: ["/fake/cat"],
      env: ["/fake/env"],
      pwd: ["/fake/pwd"],
      args: ["/fake/args"],
      fail: ["/fake/fail"],
      sleep: ["/fake/sleep"],
      stubborn: ["/fake/stubborn"],
    },
    release: () => Promise.resolve(),
  });
});
