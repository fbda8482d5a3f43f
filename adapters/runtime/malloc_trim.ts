// Gives memory that glibc's malloc holds but no longer uses back to the kernel, now and then, in a long-running
// process (the node agent).
//
// Deno's Rust side (request and child-process buffers, V8's own malloc'd data) allocates from glibc's main arena.
// After a burst of CNI requests most of it is free again, but glibc returns only the free memory at the top of that
// heap; the rest stays resident. Measured on the node agent (bench:overload, 500 concurrent ADDs then DELs): the
// arena ([heap] in smaps) held 56.7 MiB once idle, and one malloc_trim(0) brought it to 22.8 MiB, the process from
// 148.8 to 113.1 MiB RSS. A trim of a heap that size takes well under a millisecond; without glibc (musl) it is skipped.
import { Effect, type Scope } from "effect";

const trim = (() => {
  let symbols: { malloc_trim: (pad: bigint) => number } | undefined | null;
  return (): boolean => {
    if (symbols === undefined) {
      try {
        symbols = Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } }).symbols;
      } catch {
        symbols = null;
      }
    }
    if (symbols === null) return false;
    symbols.malloc_trim(0n);
    return true;
  };
})();

/** Calls malloc_trim(0) every `periodMs` while the scope lives; false (and nothing forked) without glibc. */
export const trimMallocEvery = (periodMs: number): Effect.Effect<boolean, never, Scope.Scope> =>
  Effect.gen(function* () {
    if (!trim()) return false;
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(`${periodMs} millis`), Effect.sync(trim))));
    return true;
  });
