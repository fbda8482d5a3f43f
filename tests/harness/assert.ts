// Minimal assertions (jsr's @std/assert is unreachable from this network).
export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

function canonical(v: unknown): string {
  return JSON.stringify(
    v,
    (_k, x) =>
      x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
        : typeof x === "bigint"
        ? `${x}n`
        : x,
  );
}

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  const a = canonical(actual), e = canonical(expected);
  if (a !== e) throw new AssertionError(`${msg ? msg + ": " : ""}expected ${e}\n  but got ${a}`);
}

export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (canonical(actual) === canonical(expected)) {
    throw new AssertionError(`${msg ? msg + ": " : ""}did not expect ${canonical(actual)}`);
  }
}

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  if (!re.test(actual)) {
    throw new AssertionError(`${msg ? msg + ": " : ""}${JSON.stringify(actual)} does not match ${re}`);
  }
}

export async function assertRejects(fn: () => Promise<unknown>, check?: (e: unknown) => void): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    check?.(e);
    return e;
  }
  throw new AssertionError("expected a rejection");
}

/** Fails unless `fn` throws an error whose message contains `includes`. */
export function assertThrows(fn: () => unknown, includes: string): void {
  try {
    fn();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!message.includes(includes)) {
      throw new AssertionError(`threw "${message}", expected it to contain "${includes}"`);
    }
    return;
  }
  throw new AssertionError(`expected a throw containing "${includes}"`);
}

export function fail(msg: string): never {
  throw new AssertionError(msg);
}
