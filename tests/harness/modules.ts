// The project's own module graph, read from the sources (for tests that check what an entry point pulls in, and the
// architecture's boundaries).
import { repoRoot } from "./proc.ts";

/** One relative import of a module: what it names (a path from the repository root) and how. */
export interface ModuleImport {
  readonly target: string;
  /** `import("…")` at run time rather than a static import/export. */
  readonly dynamic: boolean;
}

/** The relative .ts modules `rel` (a path from the repository root) imports, statically or with `import("…")`. */
export function importsOf(rel: string, text: string = Deno.readTextFileSync(`${repoRoot}/${rel}`)): ModuleImport[] {
  return [...text.matchAll(/(?:from|import)\s*(\(\s*)?"(\.{1,2}\/[^"]+\.ts)"/g)].map((m) => ({
    target: new URL(m[2], `file:///${rel}`).pathname.slice(1),
    dynamic: m[1] !== undefined,
  }));
}

/**
 * The relative .ts modules `entry` (a path from the repository root) imports statically, transitively, itself
 * included. Type-only imports are included too: a harmless over-approximation for the checks that use it.
 */
export function moduleGraph(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (rel: string) => {
    if (seen.has(rel)) return;
    seen.add(rel);
    for (const i of importsOf(rel)) if (!i.dynamic) visit(i.target);
  };
  visit(entry);
  return [...seen].sort();
}

/** Every .ts module under the repository's `dirs` (paths from the root), sorted; `exclude` prefixes are skipped. */
export function modulesUnder(dirs: ReadonlyArray<string>, exclude: ReadonlyArray<string> = []): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${repoRoot}/${dir}`)) {
      const rel = `${dir}/${e.name}`;
      if (exclude.some((x) => rel === x || rel.startsWith(`${x}/`))) continue;
      if (e.isDirectory) walk(rel);
      else if (e.isFile && rel.endsWith(".ts")) out.push(rel);
    }
  };
  for (const d of dirs) walk(d);
  return out.sort();
}
