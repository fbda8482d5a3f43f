// The live Process layer: Deno.Command with clearEnv and an argv array (never a shell).
import { Effect, Layer } from "effect";
import {
  type ExecOptions,
  type ExecResult,
  Process,
  type ProcessError,
  ProcessExitError,
  ProcessNotFound,
  type ProcessService,
  ProcessSpawnError,
  ProcessTimeout,
  tail,
} from "../../core/ports/process.ts";

/** After the program exits, how long grandchildren may keep its output pipes open before we stop reading. */
const drainMs = 500;

/** Resolves a bare program name in the PATH of the child's environment, as execvp would with that PATH. */
async function resolve(program: string, env: Readonly<Record<string, string>>): Promise<string | undefined> {
  if (program.includes("/")) return program;
  for (const dir of (env.PATH ?? "").split(":")) {
    if (!dir) continue;
    try {
      const st = await Deno.stat(`${dir}/${program}`);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${program}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Read size for a child's output (CNI answers are a few KiB). Each stream is read into one buffer of this size of our
 * own (a BYOB reader) rather than in the stream's default chunks, a fresh 64 KiB buffer per read: under a burst of
 * ADDs those churned the allocator's heap, which then never shrinks (measured, 1,500 children 32 at a time: the
 * process's malloc heap grew by 44 MiB with default reads, 3 MiB with 4 KiB reads of our own).
 */
const readBytes = 4096;

async function collect(stream: ReadableStream<Uint8Array>, exited: Promise<void>): Promise<Uint8Array> {
  const reader = stream.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(readBytes);
  const chunks: Uint8Array[] = [];
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Once the program is gone, give the pipe a moment, then cancel: an orphaned grandchild may hold it open.
  void exited.then(() => {
    if (!finished) timer = setTimeout(() => void reader.cancel().catch(() => {}), drainMs);
  });
  try {
    while (true) {
      const { done, value } = await reader.read(new Uint8Array(buffer));
      if (done || value === undefined) break;
      chunks.push(value.slice());
      // The read hands the buffer back in `value` (the one passed in is detached).
      buffer = value.buffer;
    }
  } catch {
    // cancelled or broken pipe: keep what we have
  } finally {
    finished = true;
    clearTimeout(timer);
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

type Outcome =
  | { readonly _tag: "Exited"; readonly result: ExecResult }
  | { readonly _tag: "TimedOut"; readonly killed: boolean; readonly stderr: Uint8Array };

async function run(o: ExecOptions, program: string, signal: AbortSignal): Promise<Outcome> {
  const [, ...args] = o.argv;
  const child = new Deno.Command(program, {
    args,
    env: { ...o.env },
    clearEnv: true,
    ...(o.cwd ? { cwd: o.cwd } : {}),
    stdin: o.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const exited = Promise.withResolvers<void>();
  const status = child.status.finally(() => exited.resolve());
  const stdout = collect(child.stdout, exited.promise);
  const stderr = collect(child.stderr, exited.promise);

  if (o.stdin !== undefined) {
    const data = typeof o.stdin === "string" ? new TextEncoder().encode(o.stdin) : o.stdin;
    const w = child.stdin.getWriter();
    // A program that exits without reading its input is not our error (EPIPE).
    await w.write(data).then(() => w.close()).catch(() => {});
  }

  const kill = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch {
      // already exited
    }
  };
  const grace = o.killGraceMs ?? 2000;
  let killed = false;
  /** SIGTERM, then SIGKILL if it is still there after the grace period. */
  const terminate = async () => {
    kill("SIGTERM");
    const timer = setTimeout(() => {
      killed = true;
      kill("SIGKILL");
    }, grace);
    await status;
    clearTimeout(timer);
  };
  const onAbort = () => void terminate();
  signal.addEventListener("abort", onAbort, { once: true });

  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = o.timeoutMs === undefined
    ? new Promise<"timeout">(() => {})
    : new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), o.timeoutMs)));
  try {
    const first = await Promise.race([status, timedOut]);
    if (first === "timeout") {
      await terminate();
      return { _tag: "TimedOut", killed, stderr: await stderr };
    }
    const st = first;
    return {
      _tag: "Exited",
      result: {
        code: st.code,
        ...(st.signal ? { signal: st.signal } : {}),
        stdout: await stdout,
        stderr: await stderr,
      },
    };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

export const makeLiveProcess = (): ProcessService => ({
  exec: (o) =>
    Effect.gen(function* () {
      const program = yield* Effect.promise(() => resolve(o.argv[0], o.env));
      if (program === undefined) {
        return yield* new ProcessNotFound({ program: o.argv[0], detail: `not in PATH=${o.env.PATH ?? "(unset)"}` });
      }
      const outcome = yield* Effect.callback<Outcome, ProcessError>((resume) => {
        const abort = new AbortController();
        const finished = run(o, program, abort.signal).then(
          (out) => resume(Effect.succeed(out)),
          (e) => {
            const detail = e instanceof Error ? e.message : String(e);
            resume(Effect.fail(
              e instanceof Deno.errors.NotFound && !(o.cwd && detail.includes("cwd"))
                ? new ProcessNotFound({ program: o.argv[0], detail })
                : new ProcessSpawnError({ argv: [...o.argv], detail }),
            ));
          },
        );
        // Interrupted: terminate the program (SIGTERM, SIGKILL after the grace period) and wait until it is gone.
        return Effect.promise(() => {
          abort.abort();
          return finished;
        });
      });
      if (outcome._tag === "TimedOut") {
        return yield* new ProcessTimeout({
          argv: [...o.argv],
          timeoutMs: o.timeoutMs ?? 0,
          killed: outcome.killed,
          stderr: tail(outcome.stderr, 500),
        });
      }
      const r = outcome.result;
      if (o.check && (r.code !== 0 || r.signal)) {
        return yield* new ProcessExitError({
          argv: [...o.argv],
          code: r.code,
          ...(r.signal ? { signal: r.signal } : {}),
          stderr: tail(r.stderr),
        });
      }
      return r;
    }),
});

export const layerLiveProcess: Layer.Layer<Process> = Layer.succeed(Process, makeLiveProcess());
