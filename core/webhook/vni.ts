// VNI ranges of TenantConfig profiles: DANM's cpuset list syntax ("2000-2500,2601,2650-2700"), kept as sorted,
// merged intervals so that a VXLAN range of 16 M IDs costs two numbers, not a bitmask.
//
// DANM capped every VNI at 5000 (its 5001-bit `alloc`); we allow each type's real maximum.

export const VniTypes = ["vlan", "vxlan"] as const;
export type VniType = typeof VniTypes[number];

export const isVniType = (s: string): s is VniType => (VniTypes as ReadonlyArray<string>).includes(s);

/** 802.1Q: 0 and 4095 are reserved. VXLAN: 24 bits, 0 unused by convention. */
export const vniMaximum: { readonly [T in VniType]: number } = { vlan: 4094, vxlan: 16777215 };

export interface VniInterval {
  readonly start: number;
  /** Inclusive. */
  readonly end: number;
}

/** Sorted, non-overlapping, non-adjacent intervals. */
export type VniRange = ReadonlyArray<VniInterval>;

/** Parses a cpuset-style list; the error names the offending item. */
export function parseVniRange(text: string): { readonly range: VniRange } | { readonly error: string } {
  const intervals: VniInterval[] = [];
  if (text.trim() === "") return { range: [] };
  for (const raw of text.split(",")) {
    const item = raw.trim();
    const m = /^(\d+)(?:-(\d+))?$/.exec(item);
    if (!m) return { error: `"${item}" is not a number or a range a-b` };
    const start = Number(m[1]), end = m[2] === undefined ? start : Number(m[2]);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return { error: `"${item}" is out of range` };
    if (end < start) return { error: `"${item}": the end of a range must not be below its start` };
    intervals.push({ start, end });
  }
  return { range: normalize(intervals) };
}

function normalize(intervals: ReadonlyArray<VniInterval>): VniRange {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  const out: VniInterval[] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last && i.start <= last.end + 1) out[out.length - 1] = { start: last.start, end: Math.max(last.end, i.end) };
    else out.push(i);
  }
  return out;
}

export const rangeMin = (r: VniRange): number | undefined => r[0]?.start;
export const rangeMax = (r: VniRange): number | undefined => r[r.length - 1]?.end;

export const rangeContains = (r: VniRange, id: number): boolean => r.some((i) => id >= i.start && id <= i.end);

/** The lowest ID shared by both ranges, or undefined when they are disjoint. */
export function firstOverlap(a: VniRange, b: VniRange): number | undefined {
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    const lo = Math.max(a[i].start, b[j].start), hi = Math.min(a[i].end, b[j].end);
    if (lo <= hi) return lo;
    if (a[i].end < b[j].end) i++;
    else j++;
  }
  return undefined;
}

/** IDs in ascending order, lazily (a VXLAN range may hold millions). */
export function* rangeValues(r: VniRange): Generator<number> {
  for (const i of r) for (let id = i.start; id <= i.end; id++) yield id;
}

export const rangeSize = (r: VniRange): number => r.reduce((n, i) => n + i.end - i.start + 1, 0);

export function formatRange(r: VniRange): string {
  return r.map((i) => (i.start === i.end ? `${i.start}` : `${i.start}-${i.end}`)).join(",");
}
