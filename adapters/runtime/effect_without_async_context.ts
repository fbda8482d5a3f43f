// Loads effect without node:async_hooks context capture. Import it first in every entry point (before anything that
// imports effect).
//
// Why: effect wraps every fiber suspension in a node:async_hooks AsyncResource when the runtime has one. Under Deno
// (2.9) each AsyncResource's context snapshot holds the resource that was current when it was made, so every
// suspension keeps all earlier ones alive: ~42 bytes per await that are never freed (a long-running node agent leaks
// without bound) and a growing heap for every GC to mark. danm uses no AsyncLocalStorage across effect fibers.
// Measured: tests/unit/runtime/async_context_test.ts.
import { restoreBuiltinModules } from "./hide_async_hooks.ts";
import "effect";

restoreBuiltinModules();
