// Runs one fuzz target for a number of cases with fast-check and counts the cases that break the property: the
// decoder answers with a value or with one of its typed errors — one whose message names the field when a single
// field of a valid document was changed — within a time bound; never an untyped exception or a defect.
import fc from "fast-check";
import type { Case, PathSegment } from "./inputs.ts";
import { describePath } from "./inputs.ts";
import type { AnyTarget, Outcome } from "./targets.ts";

/** A single decode taking longer than this counts as a hang. */
export const slowCaseMs = 2_000;

/** CPU time (user + system) of this process so far, in ms (/proc/self/stat, USER_HZ = 100). */
function processCpuMs(): number {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

export interface Failure {
  readonly how: string;
  readonly problem: string;
  readonly input: string;
}

export interface TargetReport {
  readonly name: string;
  readonly cases: number;
  readonly failures: number;
  readonly values: number;
  readonly typedErrors: number;
  readonly seconds: number;
  /** The first few failures, for the report (the seed reproduces all of them). */
  readonly examples: ReadonlyArray<Failure>;
}

/** The keys of a changed path the decoder's message may use to name it. */
function namesOf(path: ReadonlyArray<PathSegment>): string[] {
  const keys = path.filter((s): s is string => typeof s === "string" && s !== "");
  return keys.length > 0 ? keys : path.map(String);
}

/** Why `outcome` breaks the property for `c`, or undefined when it holds. */
export function judge(target: AnyTarget, c: Case<unknown>, outcome: Outcome, ms: number): string | undefined {
  if (ms > slowCaseMs) return `took ${ms.toFixed(0)} ms (twice; CPU time the second time)`;
  if (outcome._tag === "Untyped") return outcome.detail;
  if (outcome._tag === "Value") return undefined;
  if (outcome.message.trim() === "") return `${outcome.tag} without a message`;
  if (target.namesFields && c.changed && c.changed.length > 0) {
    const names = namesOf(c.changed);
    if (!names.some((n) => outcome.message.includes(n))) {
      return `${outcome.tag} does not name the changed field ${describePath(c.changed)}: ${
        outcome.message.slice(0, 300)
      }`;
    }
  }
  return undefined;
}

const show = (input: unknown): string => {
  const text = input instanceof Uint8Array ? `bytes ${Array.from(input).join(",")}` : JSON.stringify(input);
  return text.length > 400 ? `${text.slice(0, 400)}… (${text.length} chars)` : text;
};

export async function fuzzTarget(target: AnyTarget, cases: number, seed: number): Promise<TargetReport> {
  const started = performance.now();
  let failures = 0, values = 0, typedErrors = 0, ran = 0;
  const examples: Failure[] = [];
  const decode = async (c: Case<unknown>): Promise<{ outcome: Outcome; ms: number }> => {
    const t = performance.now();
    try {
      const outcome = await target.decode(c.input);
      return { outcome, ms: performance.now() - t };
    } catch (e) {
      const detail = `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
      return { outcome: { _tag: "Untyped", detail }, ms: performance.now() - t };
    }
  };
  const check = async (c: Case<unknown>) => {
    ran++;
    let { outcome, ms } = await decode(c);
    // On a shared machine any case can stall (GC, other processes): a slow case is decoded again and judged by the
    // CPU time this process spent on it, which load does not inflate.
    if (ms > slowCaseMs) {
      const cpu0 = processCpuMs();
      ({ outcome } = await decode(c));
      ms = processCpuMs() - cpu0;
    }
    const problem = judge(target, c, outcome, ms);
    if (problem !== undefined) {
      failures++;
      if (examples.length < 5) examples.push({ how: c.how, problem, input: show(c.input) });
    } else if (outcome._tag === "Value") values++;
    else typedErrors++;
    // Failures are counted, not thrown: the run covers every case and reports how many broke the property.
    return true;
  };
  await fc.assert(fc.asyncProperty(target.cases, check), { numRuns: cases, seed, endOnFailure: true });
  return {
    name: target.name,
    cases: ran,
    failures,
    values,
    typedErrors,
    seconds: (performance.now() - started) / 1000,
    examples,
  };
}
