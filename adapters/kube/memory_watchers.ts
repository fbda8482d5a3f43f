// The open watches of one resource in the memory apiserver, filed under one equality requirement of their
// selector (a node's informers watch `spec.nodeName=<node>` or a node label): a write reaches the watches whose
// selector can match the object's new or previous state, not every watch of the resource — with a node agent
// per node, a fan-out to all of them made each write cost O(nodes). Delivery still tests the whole selector.
import { fieldReader } from "./selectors.ts";
import { labelsOf, type Selection } from "./memory_index.ts";
import type { JsonObject } from "./patch.ts";

interface Route<W> {
  readonly read: (obj: JsonObject) => string | undefined;
  readonly byValue: Map<string, Set<W>>;
}

/** The requirement a watch is filed under: the first field or label equality, else none. */
const routeOf = (s: Selection) => {
  const field = s.fields.find((f) => f.op === "=");
  if (field) return { dim: `field:${field.path}`, value: field.value, read: fieldReader(field.path) };
  for (const l of s.labels) {
    const value = l.op === "=" ? l.value : l.op === "in" && l.values.length === 1 ? l.values[0] : undefined;
    if (value !== undefined) {
      return { dim: `label:${l.key}`, value, read: (o: JsonObject) => labelsOf(o)[l.key] as string | undefined };
    }
  }
  if (s.namespace !== undefined) {
    return { dim: "field:metadata.namespace", value: s.namespace, read: fieldReader("metadata.namespace") };
  }
  return undefined;
};

export class WatcherRoutes<W extends { readonly selection: Selection }> {
  private readonly routes = new Map<string, Route<W>>();
  private readonly unrouted = new Set<W>();
  /** Where each watch is filed, to take it out again. */
  private readonly filed = new Map<
    W,
    { readonly set: Set<W>; readonly byValue?: Map<string, Set<W>>; value?: string }
  >();

  get size(): number {
    return this.filed.size;
  }

  all(): IterableIterator<W> {
    return this.filed.keys();
  }

  add(w: W): void {
    const r = routeOf(w.selection);
    if (!r) {
      this.unrouted.add(w);
      this.filed.set(w, { set: this.unrouted });
      return;
    }
    let route = this.routes.get(r.dim);
    if (!route) this.routes.set(r.dim, route = { read: r.read, byValue: new Map() });
    let set = route.byValue.get(r.value);
    if (!set) route.byValue.set(r.value, set = new Set());
    set.add(w);
    this.filed.set(w, { set, byValue: route.byValue, value: r.value });
  }

  delete(w: W): void {
    const f = this.filed.get(w);
    if (!f) return;
    this.filed.delete(w);
    f.set.delete(w);
    if (f.byValue && f.value !== undefined && f.set.size === 0) f.byValue.delete(f.value);
  }

  /** Every watch whose selector may match `object` or `previous`, each once. */
  *candidates(object: JsonObject, previous?: JsonObject): Generator<W> {
    yield* this.unrouted;
    for (const route of this.routes.values()) {
      const now = route.read(object), before = previous === undefined ? undefined : route.read(previous);
      if (now !== undefined) yield* route.byValue.get(now) ?? [];
      if (before !== undefined && before !== now) yield* route.byValue.get(before) ?? [];
    }
  }
}
