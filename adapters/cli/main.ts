// What the long-running binaries' composition roots share: flag decoding with readable errors, the host name as
// a default node name, and running a program until SIGTERM/SIGINT.
import { parseArgs } from "node:util";
import { Effect, Schema } from "effect";
import { problemsOf, renderProblems } from "../../core/api/formats.ts";

/** The host name, or "" where it cannot be read. */
export const hostname = (): string => {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
};

/** Decodes parsed flags with `schema`; on failure prints every problem and exits 2. */
export function decodeFlagsOrExit<A, I>(program: string, schema: Schema.Codec<A, I>, values: unknown): A {
  const decoded = Schema.decodeUnknownExit(schema)(values, { errors: "all" });
  if (decoded._tag === "Success") return decoded.value;
  const issue = decoded.cause.reasons.find((r) => r._tag === "Fail");
  console.error(
    `${program}: bad flags: ${issue ? renderProblems(problemsOf(issue.error.issue)) : String(decoded.cause)}`,
  );
  Deno.exit(2);
}

type FlagOptions = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;

/**
 * A command line of flags and positional arguments, for the operator's commands (danmctl, sim): parsed with
 * node:util's parseArgs (strict) and the flags decoded with `schema`. An unknown or malformed flag prints the
 * problem and `usage` and exits 2; -h/--help prints `usage` and exits 0.
 */
export function parseCommandLineOrExit<A, I>(
  program: string,
  usage: () => string,
  options: FlagOptions,
  schema: Schema.Codec<A, I>,
): { readonly flags: A; readonly positionals: ReadonlyArray<string> } {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      strict: true,
      options: { ...options, help: { type: "boolean", short: "h", default: false } },
    });
  } catch (e) {
    console.error(`${program}: ${e instanceof Error ? e.message : String(e)}\n${usage()}`);
    Deno.exit(2);
  }
  const { help, ...values } = parsed.values;
  if (help) {
    console.log(usage());
    Deno.exit(0);
  }
  return { flags: decodeFlagsOrExit(program, schema, values), positionals: parsed.positionals };
}

/**
 * Runs `main` until it fails or a SIGTERM/SIGINT interrupts it (the scope then closes: sockets, watches, servers).
 * A failure exits 1, so that a DaemonSet or Deployment restarts the process rather than leaving it lingering.
 */
export async function runUntilSignal<E>(program: string, main: Effect.Effect<unknown, E>): Promise<never> {
  const abort = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => abort.abort());
  const exit = await Effect.runPromiseExit(main, { signal: abort.signal });
  if (exit._tag === "Failure" && !abort.signal.aborted) {
    const failure = exit.cause.reasons.find((r) => r._tag === "Fail");
    console.error(`${program}: ${failure ? (failure.error as Error).message : String(exit.cause)}`);
    Deno.exit(1);
  }
  Deno.exit(0);
}
