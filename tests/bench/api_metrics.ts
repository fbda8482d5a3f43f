// The apiserver's own request counters (its /metrics), for benchmarks that say what API traffic each system made.
import type { Rest } from "../integration/api/rest.ts";

/** apiserver_request_total by "VERB resource". */
export async function apiRequestCounts(rest: Rest): Promise<Map<string, number>> {
  const r = await rest.call("GET", "/metrics");
  const out = new Map<string, number>();
  for (const line of String(r.body).split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const key = `${/verb="([^"]+)"/.exec(line)?.[1]} ${/resource="([^"]*)"/.exec(line)?.[1]}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.split(" ").pop()));
  }
  return out;
}

const writeVerb = /^(POST|PUT|PATCH|DELETE|APPLY) /;

/** The writes ("VERB resource" → count) between two apiRequestCounts, less `excluded` (the bench's own). */
export function writesBetween(
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
  excluded: Readonly<Record<string, number>> = {},
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, n] of after) {
    const delta = n - (before.get(key) ?? 0) - (excluded[key] ?? 0);
    if (delta > 0 && writeVerb.test(key)) out[key] = delta;
  }
  return out;
}
