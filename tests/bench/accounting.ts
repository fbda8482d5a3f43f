// What a benchmark's parties cost: the apiserver's own request counters (its /metrics), for the API traffic each
// system made, and the CPU time of processes.
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

/**
 * CPU time (user + system) process `pid` has used, in ms; with `reaped`, also that of the children it has waited for
 * (and theirs): a fake kubelet's CNI processes, a daemon's delegate plugins. 0 when the process is gone.
 */
export function processCpuMs(pid: number, reaped = false): number {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return 0;
  }
  const f = stat.slice(stat.lastIndexOf(") ") + 2).split(" ").map(Number);
  // utime, stime, cutime, cstime are fields 14-17 (state is field 3 = index 0), in USER_HZ (100) ticks.
  return ((f[11] + f[12] + (reaped ? f[13] + f[14] : 0)) * 1000) / 100;
}
