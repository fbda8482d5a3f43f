// The Process port's contract, run against the live layer (real programs) and the memory twin (fakes with the
// same behaviour). Each environment says which argv runs each behaviour; the tests never build commands from
// data, and arguments are passed as argv entries, not through a shell.
import { Effect, Fiber, type Layer } from "effect";
import { decodeText, Process, type ProcessService } from "../../core/ports/process.ts";
import { assert, assertEquals, assertMatch, fail } from "../harness/assert.ts";

export interface ProcessPrograms {
  /** Copies stdin to stdout. */
  readonly cat: readonly [string, ...string[]];
  /** Prints its environment, NAME=value per line. */
  readonly env: readonly [string, ...string[]];
  /** Prints its working directory. */
  readonly pwd: readonly [string, ...string[]];
  /** Prints each further argument on its own line. */
  readonly args: readonly [string, ...string[]];
  /** Writes "boom" to stderr and exits with the code given as the one further argument. */
  readonly fail: readonly [string, ...string[]];
  /** Runs for a minute unless terminated. */
  readonly sleep: readonly [string, ...string[]];
  /** Runs forever and ignores SIGTERM. */
  readonly stubborn: readonly [string, ...string[]];
}

export interface ProcessContractEnv {
  readonly layer: Layer.Layer<Process>;
  readonly programs: ProcessPrograms;
  /** An existing directory to run in. */
  readonly cwd: string;
  readonly release: () => Promise<void>;
}

export function processContract(suite: string, env: () => Promise<ProcessContractEnv>): void {
  const test = (
    title: string,
    body: (p: ProcessService, e: ProcessContractEnv) => Effect.Effect<void, unknown>,
  ) =>
    Deno.test(`${suite}: ${title}`, async () => {
      const e = await env();
      try {
        await Effect.runPromise(
          Effect.gen(function* () {
            yield* body(yield* Process, e);
          }).pipe(Effect.provide(e.layer)),
        );
      } finally {
        await e.release();
      }
    });

  const noEnv = { PATH: "/usr/bin:/bin" };

  test("stdin bytes reach the program and its stdout comes back exactly", (p, e) =>
    Effect.gen(function* () {
      const input = Uint8Array.from({ length: 256 }, (_, i) => i);
      const r = yield* p.exec({ argv: e.programs.cat, env: noEnv, stdin: input });
      assertEquals(r.code, 0);
      assertEquals([...r.stdout], [...input]);
      const t = yield* p.exec({ argv: e.programs.cat, env: noEnv, stdin: '{"cniVersion":"1.0.0"}' });
      assertEquals(decodeText(t.stdout), '{"cniVersion":"1.0.0"}');
    }));

  test("the environment is exactly the one given", (p, e) =>
    Effect.gen(function* () {
      const given = { CNI_COMMAND: "ADD", CNI_ARGS: "K8S_POD_NAME=a;IgnoreUnknown=1", SPACED: "two words" };
      const r = yield* p.exec({ argv: e.programs.env, env: given });
      const lines = decodeText(r.stdout).split("\n").filter(Boolean).sort();
      assertEquals(lines, Object.entries(given).map(([k, v]) => `${k}=${v}`).sort());
    }));

  test("the program runs in the given working directory", (p, e) =>
    Effect.gen(function* () {
      const r = yield* p.exec({ argv: e.programs.pwd, env: noEnv, cwd: e.cwd });
      assertEquals(decodeText(r.stdout).trim(), e.cwd);
    }));

  test("arguments arrive verbatim: no shell expands or splits them", (p, e) =>
    Effect.gen(function* () {
      const tricky = ["a b", "$HOME", "'q'", "*", "; echo pwned", "$(id)", ""];
      const r = yield* p.exec({ argv: [...e.programs.args, ...tricky], env: noEnv });
      assertEquals(decodeText(r.stdout).split("\n").slice(0, -1), tricky);
    }));

  test(
    "a non-zero exit returns code and stderr; with check it fails with ProcessExitError",
    (p, e) =>
      Effect.gen(function* () {
        const r = yield* p.exec({ argv: [...e.programs.fail, "3"], env: noEnv });
        assertEquals(r.code, 3);
        assertEquals(decodeText(r.stderr).trim(), "boom");
        const err = yield* Effect.flip(p.exec({ argv: [...e.programs.fail, "4"], env: noEnv, check: true }));
        if (err._tag !== "ProcessExitError") return fail(`expected ProcessExitError, got ${err._tag}`);
        assertEquals(err.code, 4);
        assertMatch(err.message, /exited with code 4: boom$/);
      }),
  );

  test("an unknown program fails with ProcessNotFound, by path and by name", (p) =>
    Effect.gen(function* () {
      const byPath = yield* Effect.flip(p.exec({ argv: ["/nonexistent/danm-prog"], env: noEnv }));
      assertEquals(byPath._tag, "ProcessNotFound");
      assertMatch(byPath.message, /^exec \/nonexistent\/danm-prog: program not found/);
      const byName = yield* Effect.flip(p.exec({ argv: ["danm-no-such-program"], env: noEnv }));
      assertEquals(byName._tag, "ProcessNotFound");
    }));

  test(
    "a program outliving its timeout is terminated and reported as ProcessTimeout",
    (p, e) =>
      Effect.gen(function* () {
        const started = Date.now();
        const err = yield* Effect.flip(p.exec({ argv: e.programs.sleep, env: noEnv, timeoutMs: 200 }));
        assertEquals(err._tag, "ProcessTimeout");
        const took = Date.now() - started;
        assert(took >= 150 && took < 3000, `ended after the timeout, promptly (${took} ms)`);
      }),
  );

  test("a program ignoring SIGTERM is killed after the grace period", (p, e) =>
    Effect.gen(function* () {
      const started = Date.now();
      const err = yield* Effect.flip(
        p.exec({ argv: e.programs.stubborn, env: noEnv, timeoutMs: 100, killGraceMs: 300 }),
      );
      if (err._tag !== "ProcessTimeout") return fail(`expected ProcessTimeout, got ${err._tag}`);
      const took = Date.now() - started;
      assert(took < 5000, `the program was killed (${took} ms)`);
    }));

  test("interrupting exec ends the program", (p, e) =>
    Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(p.exec({ argv: e.programs.sleep, env: noEnv }));
      yield* Effect.sleep("100 millis");
      const started = Date.now();
      yield* Fiber.interrupt(fiber);
      const took = Date.now() - started;
      assert(took < 3000, `interruption completed (${took} ms)`);
    }));
}
