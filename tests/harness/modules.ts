// The project's own module graph, read from the sources (for tests that check what an entry point pulls in).
import { repoRoot } from "./proc.ts";

/**
 * The relative .ts modules `entry` (a path from the repository root) imports, transitively, itself included.
 * Type-only imports are included too: a harmless over-approximation for the checks that use it.
 */
export function moduleGraph(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (rel: string) => {
    if (seen.has(rel)) return;
    seen.add(rel);
    const text = Deno.readTextFileSync(`${repoRoot}/${rel}`);
    for (const m of text.matchAll(/(?:from|import)\s*"(\.{1,2}\/[^"]+\.ts)"/g)) {
      visit(new URL(m[1], `file:///${rel}`).pathname.slice(1));
    }
  };
  visit(entry);
  return [...seen].sort();
}
