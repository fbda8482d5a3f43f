// A seeded pseudo-random source (mulberry32), so a chaos run can be repeated from the seed its report prints.
// Concurrent users take independent streams (substream): how far one of them got, which depends on timing, does not
// shift what another decides. (Timing on a shared machine still varies, so two runs agree on what was decided, not on
// exactly when each fault landed inside an ADD.)
export interface Rng {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  pick<T>(items: ReadonlyArray<T>): T;
  chance(p: number): boolean;
  shuffle<T>(items: ReadonlyArray<T>): T[];
}

export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  return {
    seed: seed >>> 0,
    next,
    int,
    pick: (items) => items[int(0, items.length - 1)],
    chance: (p) => next() < p,
    shuffle: (items) => {
      const out = [...items];
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(0, i);
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    },
  };
}

/** An independent stream for `key`, derived from `seed` alone (a murmur3-style mix of the two). */
export function substream(seed: number, key: number): Rng {
  let h = Math.imul((seed >>> 0) ^ 0x85ebca6b, 0xcc9e2d51) ^ Math.imul((key >>> 0) + 0x27d4eb2f, 0x165667b1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return makeRng(h >>> 0);
}
