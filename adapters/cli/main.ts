// What the long-running binaries' composition roots share: flag decoding with readable errors, the host name as
// a default node name, and running a program until SIGTERM/SIGINT.
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
