// The in-memory Process twin: programs are registered as Effects of {argv, env, stdin, cwd}. Every call is
// recorded so tests can check exactly what would have been run.
import { Effect, Layer } from "effect";
import {
  type ExecResult,
  Process,
  ProcessExitError,
  ProcessNotFound,
  type ProcessService,
  ProcessTimeout,
  tail,
} from "../../core/ports/process.ts";

export interface FakeInvocation {
  readonly argv: ReadonlyArray<string>;
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: Uint8Array;
  readonly cwd?: string;
}

export interface FakeOutput {
  readonly code?: number;
  readonly stdout?: string | Uint8Array;
  readonly stderr?: string | Uint8Array;
}

export type FakeProgram = (invocation: FakeInvocation) => Effect.Effect<FakeOutput>;

const bytes = (v: string | Uint8Array | undefined) =>
  v === undefined ? new Uint8Array() : typeof v === "string" ? new TextEncoder().encode(v) : v;

export class MemoryProcess {
  private readonly programs = new Map<string, FakeProgram>();
  /** Every exec, in order (also those that found no program). */
  readonly calls: FakeInvocation[] = [];

  /** Registers a program under an absolute path (found by name through the caller's PATH) or a bare name. */
  register(program: string, run: FakeProgram): this {
    this.programs.set(program, run);
    return this;
  }

  /** The program registered under exactly `program` (to wrap it). */
  registered(program: string): FakeProgram | undefined {
    return this.programs.get(program);
  }

  private lookup(program: string, env: Readonly<Record<string, string>>): FakeProgram | undefined {
    if (program.includes("/")) return this.programs.get(program);
    for (const dir of (env.PATH ?? "").split(":")) {
      const p = dir && this.programs.get(`${dir}/${program}`);
      if (p) return p;
    }
    return this.programs.get(program);
  }

  readonly service: ProcessService = {
    exec: (o) => {
      return Effect.gen({ self: this }, function* () {
        const inv: FakeInvocation = {
          argv: [...o.argv],
          env: { ...o.env },
          stdin: bytes(o.stdin).slice(),
          ...(o.cwd ? { cwd: o.cwd } : {}),
        };
        this.calls.push(inv);
        const program = this.lookup(o.argv[0], o.env);
        if (!program) return yield* new ProcessNotFound({ program: o.argv[0], detail: "no fake program registered" });
        const ran = o.timeoutMs === undefined
          ? Effect.asSome(program(inv))
          : Effect.timeoutOption(program(inv), o.timeoutMs);
        const out = yield* ran;
        if (out._tag === "None") {
          return yield* new ProcessTimeout({
            argv: [...o.argv],
            timeoutMs: o.timeoutMs ?? 0,
            killed: false,
            stderr: "",
          });
        }
        const r: ExecResult = {
          code: out.value.code ?? 0,
          stdout: bytes(out.value.stdout),
          stderr: bytes(out.value.stderr),
        };
        if (o.check && r.code !== 0) {
          return yield* new ProcessExitError({ argv: [...o.argv], code: r.code, stderr: tail(r.stderr) });
        }
        return r;
      });
    },
  };
}

export const layerMemoryProcess = (p: MemoryProcess = new MemoryProcess()): Layer.Layer<Process> =>
  Layer.succeed(Process, p.service);
