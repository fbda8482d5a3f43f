// One resource's objects in the memory apiserver, indexed the way lists and watches ask for them: by namespace,
// by label (key → value) and by every field label the apiserver supports for the resource. A list with an
// equality requirement reads only the objects of its smallest index entry instead of scanning the bucket; a list
// without one walks the keys in order (kept sorted between creates and deletes) and stops at its page limit.
// Whatever an index narrows to is still matched against the whole selector, so an index only ever saves work.
import { fieldReader, type FieldRequirement, type LabelRequirement } from "./selectors.ts";
import { isJsonObject, type JsonObject } from "./patch.ts";

/** A compiled selector: the requirements, and the test of one stored object. */
export interface Selection {
  readonly namespace?: string;
  readonly labels: ReadonlyArray<LabelRequirement>;
  readonly fields: ReadonlyArray<FieldRequirement>;
  readonly matches: (obj: JsonObject) => boolean;
}

type ValueIndex = Map<string, Map<string, Set<string>>>;

const add = (index: ValueIndex, dim: string, value: string, key: string) => {
  let byValue = index.get(dim);
  if (!byValue) index.set(dim, byValue = new Map());
  let keys = byValue.get(value);
  if (!keys) byValue.set(value, keys = new Set());
  keys.add(key);
};

const remove = (index: ValueIndex, dim: string, value: string, key: string) => {
  const byValue = index.get(dim);
  const keys = byValue?.get(value);
  if (!keys) return;
  keys.delete(key);
  if (keys.size === 0) byValue!.delete(value);
};

const none: ReadonlySet<string> = new Set();

export const labelsOf = (obj: JsonObject): Readonly<Record<string, string>> => {
  const meta = obj.metadata;
  return isJsonObject(meta) && isJsonObject(meta.labels) ? meta.labels as Record<string, string> : {};
};

export class IndexedBucket<S extends { readonly raw: JsonObject }> {
  private readonly objects = new Map<string, S>();
  private readonly labels: ValueIndex = new Map();
  private readonly fields: ValueIndex = new Map();
  private readonly readers: ReadonlyArray<readonly [string, (obj: unknown) => string]>;
  /** Keys in order; undefined after a create or delete until the next ordered walk needs it. */
  private sorted: string[] | undefined = [];

  /** `fieldPaths`: the field labels to index (metadata.namespace serves namespaced lists). */
  constructor(fieldPaths: ReadonlyArray<string>) {
    this.readers = [...new Set(fieldPaths)].map((p) => [p, fieldReader(p)] as const);
  }

  get size(): number {
    return this.objects.size;
  }

  get(key: string): S | undefined {
    return this.objects.get(key);
  }

  has(key: string): boolean {
    return this.objects.has(key);
  }

  set(key: string, stored: S): void {
    const prev = this.objects.get(key);
    this.objects.set(key, stored);
    if (prev) this.reindex(key, prev.raw, stored.raw);
    else {
      this.sorted = undefined;
      this.index(key, stored.raw);
    }
  }

  delete(key: string): void {
    const prev = this.objects.get(key);
    if (!prev) return;
    this.unindex(key, prev.raw);
    this.objects.delete(key);
    this.sorted = undefined;
  }

  /** Every stored object, in key order. */
  *entries(): Generator<readonly [string, S]> {
    for (const key of this.keys()) yield [key, this.objects.get(key)!];
  }

  /**
   * The stored objects `selection` matches with a key after `after`, in key order, at most `limit` of them, and
   * whether more follow.
   */
  select(
    selection: Selection,
    after: string | undefined,
    limit: number,
  ): { readonly items: Array<readonly [string, S]>; readonly more: boolean } {
    const items: Array<readonly [string, S]> = [];
    const take = (key: string): boolean => {
      const s = this.objects.get(key);
      if (s === undefined || !selection.matches(s.raw)) return true;
      if (items.length === limit) return false;
      items.push([key, s]);
      return true;
    };
    const narrowed = this.narrow(selection);
    if (narrowed !== undefined) {
      const keys = [...narrowed].filter((k) => after === undefined || k > after).sort();
      for (const key of keys) if (!take(key)) return { items, more: true };
      return { items, more: false };
    }
    const keys = this.keys();
    for (let i = after === undefined ? 0 : upperBound(keys, after); i < keys.length; i++) {
      if (!take(keys[i])) return { items, more: true };
    }
    return { items, more: false };
  }

  /** The smallest index entry every match must be in; undefined when no requirement is an indexed equality. */
  private narrow(selection: Selection): ReadonlySet<string> | undefined {
    let best: ReadonlySet<string> | undefined;
    const consider = (keys: ReadonlySet<string>) => {
      if (best === undefined || keys.size < best.size) best = keys;
    };
    if (selection.namespace !== undefined) {
      consider(this.fields.get("metadata.namespace")?.get(selection.namespace) ?? none);
    }
    for (const r of selection.labels) {
      if (r.op === "=") consider(this.labels.get(r.key)?.get(r.value) ?? none);
      else if (r.op === "in" && r.values.length === 1) consider(this.labels.get(r.key)?.get(r.values[0]) ?? none);
    }
    for (const r of selection.fields) {
      const byValue = this.fields.get(r.path);
      if (r.op === "=" && byValue) consider(byValue.get(r.value) ?? none);
    }
    return best;
  }

  private keys(): string[] {
    return this.sorted ??= [...this.objects.keys()].sort();
  }

  private index(key: string, raw: JsonObject): void {
    for (const [k, v] of Object.entries(labelsOf(raw))) add(this.labels, k, v, key);
    for (const [path, read] of this.readers) add(this.fields, path, read(raw), key);
  }

  /** Moves the key only where a label or field changed: most updates (status, spec) change none. */
  private reindex(key: string, before: JsonObject, after: JsonObject): void {
    const was = labelsOf(before), is = labelsOf(after);
    if (was !== is) {
      for (const [k, v] of Object.entries(was)) {
        if (!Object.hasOwn(is, k) || is[k] !== v) remove(this.labels, k, v, key);
      }
      for (const [k, v] of Object.entries(is)) if (!Object.hasOwn(was, k) || was[k] !== v) add(this.labels, k, v, key);
    }
    for (const [path, read] of this.readers) {
      const old = read(before), now = read(after);
      if (old !== now) {
        remove(this.fields, path, old, key);
        add(this.fields, path, now, key);
      }
    }
  }

  private unindex(key: string, raw: JsonObject): void {
    for (const [k, v] of Object.entries(labelsOf(raw))) remove(this.labels, k, v, key);
    for (const [path, read] of this.readers) remove(this.fields, path, read(raw), key);
  }
}

/** The first index whose key sorts after `after`. */
function upperBound(keys: ReadonlyArray<string>, after: string): number {
  let lo = 0, hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Freezes a stored object all the way down: what the store hands out can be shared, never changed. */
export function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
