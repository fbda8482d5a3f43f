// How far a simulation is, and the one line `deno task sim` shows for it on stderr while it runs.

export interface SimProgress {
  /** Cluster objects (nodes, namespaces, networks, ReservedIPs, NADs, Services) sent to the API so far. */
  readonly objectsApplied: number;
  readonly objectsTotal: number;
  /** Pods through admission and CNI ADD: attached, or failed (refused, or ADD answered an error). */
  readonly podsAttached: number;
  readonly podsFailed: number;
  readonly podsTotal: number;
  /** When the first pod was started (ms since the run began); undefined before. */
  readonly podsStartedMs?: number;
}

export const initialProgress = (objectsTotal: number, podsTotal: number): SimProgress => ({
  objectsApplied: 0,
  objectsTotal,
  podsAttached: 0,
  podsFailed: 0,
  podsTotal,
});

const count = (n: number) => n.toLocaleString("en-US");

/** "4.2 s", "1m 05s", "1h 02m". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/** The pods still to do at the rate so far; undefined until there is a rate. */
export function etaMs(p: SimProgress, elapsedMs: number): number | undefined {
  const done = p.podsAttached + p.podsFailed;
  if (p.podsStartedMs === undefined || done === 0) return undefined;
  const spent = elapsedMs - p.podsStartedMs;
  if (spent <= 0) return undefined;
  return ((p.podsTotal - done) * spent) / done;
}

/** "objects 5/5 · pods 1,234/10,000 attached · 2 failed · 12.3 s · 102 pods/s · ETA 1m 27s" */
export function renderProgress(p: SimProgress, elapsedMs: number): string {
  const done = p.podsAttached + p.podsFailed;
  const parts = [
    `objects ${count(p.objectsApplied)}/${count(p.objectsTotal)}`,
    `pods ${count(p.podsAttached)}/${count(p.podsTotal)} attached`,
    ...(p.podsFailed > 0 ? [`${count(p.podsFailed)} failed`] : []),
    formatDuration(elapsedMs),
  ];
  const eta = etaMs(p, elapsedMs);
  if (eta !== undefined && p.podsStartedMs !== undefined) {
    parts.push(`${count(Math.round(done / ((elapsedMs - p.podsStartedMs) / 1000)))} pods/s`);
    if (done < p.podsTotal) parts.push(`ETA ${formatDuration(eta)}`);
  }
  return parts.join(" · ");
}
