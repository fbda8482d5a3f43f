// First half of effect_without_async_context.ts: hides node:async_hooks from `process.getBuiltinModule` while the
// effect package loads. Imports nothing, so it runs before effect's modules when imported first.
const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
const original = proc?.getBuiltinModule;

/** Puts the real getBuiltinModule back (called once effect has loaded). */
export function restoreBuiltinModules(): void {
  if (proc && original) proc.getBuiltinModule = original;
}

if (proc && original) {
  proc.getBuiltinModule = (id: string) =>
    id === "node:async_hooks" || id === "async_hooks" ? undefined : original.call(proc, id);
}
