// danm's policy table as nft reads it back (`nft -j list table inet danm_netpol`), in a form that compares by content:
// handles dropped and each set's elements sorted. A table patched element by element lists its sets' elements in the
// order they were added (the kernel's concatenated-interval sets keep insertion order), a table loaded whole in the
// script's order: same elements, same rules → equal here.

/** The normalized JSON of `nft -j list …` output (a string, so tables compare with ===). */
export function normalizedTable(json: string): string {
  const doc = JSON.parse(json) as { nftables: ReadonlyArray<Record<string, unknown>> };
  const strip = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(strip)
      : v !== null && typeof v === "object"
      ? Object.fromEntries(Object.entries(v).filter(([k]) => k !== "handle").map(([k, x]) => [k, strip(x)]))
      : v;
  const items = doc.nftables.filter((o) => !("metainfo" in o)).map((o) => {
    const clean = strip(o) as Record<string, unknown>;
    const set = clean.set as { elem?: unknown[] } | undefined;
    if (set?.elem) set.elem = set.elem.map((e) => JSON.stringify(e)).sort().map((e) => JSON.parse(e));
    return clean;
  });
  return JSON.stringify(items);
}
