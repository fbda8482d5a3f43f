// An immutable ReadonlyMap with cheap updates, for informer snapshots: every change makes a new map sharing
// almost all of its structure with the old one (effect's HashMap, a hash array mapped trie), so a cache of n
// objects costs O(log n) per watch event instead of a copy of all n — and a snapshot handed out earlier never
// changes. Iteration keeps a Map's order (first insertion of a key), computed once per snapshot.
import { HashMap, Option } from "effect";

interface Entry<V> {
  /** Insertion order: a key keeps its place when its value is replaced, as in a Map. */
  readonly seq: number;
  readonly value: V;
}

export class SnapshotMap<V> implements ReadonlyMap<string, V> {
  private ordered: ReadonlyArray<readonly [string, V]> | undefined;

  private constructor(private readonly trie: HashMap.HashMap<string, Entry<V>>, private readonly nextSeq: number) {}

  static empty<V>(): SnapshotMap<V> {
    return new SnapshotMap(HashMap.empty(), 0);
  }

  static from<V>(entries: Iterable<readonly [string, V]>): SnapshotMap<V> {
    let m = SnapshotMap.empty<V>();
    for (const [k, v] of entries) m = m.set(k, v);
    return m;
  }

  /** A new map with `key` set to `value`. */
  set(key: string, value: V): SnapshotMap<V> {
    const seq = Option.match(HashMap.get(this.trie, key), { onNone: () => this.nextSeq, onSome: (e) => e.seq });
    return new SnapshotMap(HashMap.set(this.trie, key, { seq, value }), Math.max(this.nextSeq, seq + 1));
  }

  /** A new map without `key` (this one when it has no such key). */
  delete(key: string): SnapshotMap<V> {
    return HashMap.has(this.trie, key) ? new SnapshotMap(HashMap.remove(this.trie, key), this.nextSeq) : this;
  }

  get size(): number {
    return HashMap.size(this.trie);
  }

  get(key: string): V | undefined {
    return Option.getOrUndefined(Option.map(HashMap.get(this.trie, key), (e) => e.value));
  }

  has(key: string): boolean {
    return HashMap.has(this.trie, key);
  }

  forEach(f: (value: V, key: string, map: ReadonlyMap<string, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.inOrder()) f.call(thisArg, v, k, this);
  }

  *entries(): MapIterator<[string, V]> {
    for (const [k, v] of this.inOrder()) yield [k, v];
  }

  *keys(): MapIterator<string> {
    for (const [k] of this.inOrder()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.inOrder()) yield v;
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "SnapshotMap";
  }

  private inOrder(): ReadonlyArray<readonly [string, V]> {
    if (this.ordered === undefined) {
      const all = [...this.trie].sort(([, a], [, b]) => a.seq - b.seq);
      this.ordered = all.map(([k, e]) => [k, e.value] as const);
    }
    return this.ordered;
  }
}
