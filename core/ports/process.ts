// Running other programs (CNI delegates, iptables…) as the core sees it. Live layer: adapters/process/live.ts
// (Deno.Command); in-memory layer: adapters/process/memory.ts (registered fake programs).
//
// Programs get an argv array and an exact environment: there is no shell and nothing is inherited, so input
// can never be interpreted as a command and the child sees only what the caller chose.
import { Context, type Effect, Schema } from "effect";

export interface ExecOptions {
  /** argv[0] is an absolute path, or a name looked up in `env.PATH` (not in ours). */
  readonly argv: readonly [string, ...string[]];
  /** The child's complete environment. */
  readonly env: Readonly<Record<string, string>>;
  readonly stdin?: Uint8Array | string;
  readonly cwd?: string;
  /** After this long the program gets SIGTERM, and SIGKILL `killGraceMs` later; the result is ProcessTimeout. */
  readonly timeoutMs?: number;
  /** Default 2000 ms. */
  readonly killGraceMs?: number;
  /** Fail with ProcessExitError unless the program exits with 0. */
  readonly check?: boolean;
}

export interface ExecResult {
  readonly code: number;
  /** Set when a signal ended the program. */
  readonly signal?: string;
  readonly stdout: Uint8Array;
  readonly stderr: Uint8Array;
}

export const decodeText = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** How errors show a command line: the program and its arguments, shortened. */
export const showArgv = (argv: ReadonlyArray<string>): string => {
  const s = argv.map((a) => (/^[\w./:=@%+-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
};

const argv = Schema.Array(Schema.String);

export class ProcessNotFound extends Schema.TaggedError<ProcessNotFound>()("ProcessNotFound", {
  program: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `exec ${this.program}: program not found${this.detail ? ` (${this.detail})` : ""}`;
  }
}

/** The program could not be started for another reason (permissions, missing cwd…). */
export class ProcessSpawnError extends Schema.TaggedError<ProcessSpawnError>()("ProcessSpawnError", {
  argv,
  detail: Schema.String,
}) {
  override get message(): string {
    return `exec ${showArgv(this.argv)}: cannot start: ${this.detail}`;
  }
}

export class ProcessTimeout extends Schema.TaggedError<ProcessTimeout>()("ProcessTimeout", {
  argv,
  timeoutMs: Schema.Number,
  /** Whether it took SIGKILL (it ignored SIGTERM for the grace period). */
  killed: Schema.Boolean,
  stderr: Schema.String,
}) {
  override get message(): string {
    return `exec ${showArgv(this.argv)}: no exit within ${this.timeoutMs} ms, ${
      this.killed ? "killed with SIGKILL" : "terminated"
    }${this.stderr ? `; stderr: ${this.stderr}` : ""}`;
  }
}

export class ProcessExitError extends Schema.TaggedError<ProcessExitError>()("ProcessExitError", {
  argv,
  code: Schema.Number,
  signal: Schema.optionalKey(Schema.String),
  /** The end of stderr. */
  stderr: Schema.String,
}) {
  override get message(): string {
    return `exec ${showArgv(this.argv)}: exited with ${this.signal ? `signal ${this.signal}` : `code ${this.code}`}${
      this.stderr ? `: ${this.stderr}` : ""
    }`;
  }
}

export type ProcessError = ProcessNotFound | ProcessSpawnError | ProcessTimeout | ProcessExitError;

/** The tail of an output stream for error messages. */
export const tail = (bytes: Uint8Array, max = 2000): string => {
  const s = decodeText(bytes).trim();
  return s.length > max ? `…${s.slice(-max)}` : s;
};

export interface ProcessService {
  /** Runs the program to completion; interrupting the effect terminates the program. */
  readonly exec: (options: ExecOptions) => Effect.Effect<ExecResult, ProcessError>;
}

export class Process extends Context.Service<Process, ProcessService>()("danm/core/ports/process/Process") {}
