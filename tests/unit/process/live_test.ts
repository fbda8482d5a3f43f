// Live-only process behaviour: SIGKILL after the grace period, orphaned grandchildren holding the output pipes,
// interruption actually ending the child.
import { Effect, Fiber } from "effect";
import { makeLiveProcess } from "../../../adapters/process/live.ts";
import { decodeText } from "../../../core/ports/process.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";

const p = makeLiveProcess();
const env = { PATH: "/usr/bin:/bin" };

Deno.test("live process: SIGTERM first; SIGKILL only for a program that ignores it, after the grace period", async () => {
  const polite = await Effect.runPromise(Effect.flip(p.exec({ argv: ["/bin/sleep", "60"], env, timeoutMs: 100 })));
  if (polite._tag !== "ProcessTimeout") return fail(`got ${polite._tag}`);
  assertEquals(polite.killed, false);
  const started = Date.now();
  const stubborn = await Effect.runPromise(Effect.flip(p.exec({
    argv: ["/bin/sh", "-c", "trap '' TERM; while :; do :; done"],
    env,
    timeoutMs: 100,
    killGraceMs: 300,
  })));
  if (stubborn._tag !== "ProcessTimeout") return fail(`got ${stubborn._tag}`);
  assertEquals(stubborn.killed, true);
  assert(Date.now() - started >= 380, "the grace period was granted");
});

Deno.test("live process: a grandchild holding stdout open does not keep exec waiting", async () => {
  const started = Date.now();
  const r = await Effect.runPromise(p.exec({ argv: ["/bin/sh", "-c", "sleep 3 & echo started"], env }));
  assertEquals(decodeText(r.stdout), "started\n");
  assert(Date.now() - started < 2500, `returned after the drain period (${Date.now() - started} ms)`);
});

Deno.test("live process: output larger than one read comes back whole, byte for byte, on both streams", async () => {
  // Bytes 0–255 repeated: a lost, repeated or reordered read (the output is read in pieces of our own) shows.
  const data = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256);
  const r = await Effect.runPromise(p.exec({ argv: ["/bin/sh", "-c", "tee /dev/stderr"], env, stdin: data }));
  assertEquals([r.stdout.length, r.stderr.length], [data.length, data.length]);
  assert(r.stdout.every((b, i) => b === data[i]), "stdout intact");
  assert(r.stderr.every((b, i) => b === data[i]), "stderr intact");
});

Deno.test("live process: interrupting exec terminates the child process", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-proc-" });
  try {
    const pidFile = `${dir}/pid`;
    await Effect.runPromise(Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(
        p.exec({ argv: ["/bin/sh", "-c", 'echo $$ > "$1"; exec sleep 60', "sh", pidFile], env }),
      );
      let pid = "";
      while (!pid) {
        yield* Effect.sleep("10 millis");
        pid = yield* Effect.promise(() => Deno.readTextFile(pidFile).then((s) => s.trim(), () => ""));
      }
      assert(yield* Effect.promise(() => Deno.stat(`/proc/${pid}`).then(() => true, () => false)), "child running");
      yield* Fiber.interrupt(fiber);
      const alive = yield* Effect.promise(() => Deno.stat(`/proc/${pid}`).then(() => true, () => false));
      assertEquals(alive, false, "the child is gone once the interruption completed");
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
