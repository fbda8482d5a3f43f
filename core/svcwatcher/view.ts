// The controller's view of the cluster, fed by the shared informers of the Kube port: the objects svcwatcher
// reads, indexed the way reconciling needs them (per namespace, DanmEps per pod, owned slices per Service), and
// for every change the keys it affects.
//
// The view is written only by the informer consumers and read by the workers; a key is enqueued only after the
// change that caused it is in the view, so a reconcile never runs on a view older than its trigger.
import { Effect, Stream, SubscriptionRef } from "effect";
import { type AnnotationError, type DanmServiceSelection, serviceSelection } from "../api/annotations.ts";
import type { DanmEp } from "../api/danm.ts";
import type { Endpoints, EndpointSlice, Pod, Service } from "../api/k8s.ts";
import { type InformerEvent, objectKey } from "../ports/kube.ts";
import { EndpointControllerNameLabel, hasDanmAnnotations, selectorMatches, ServiceNameLabel } from "./model.ts";

/** What a change touches: Services to reconcile, DanmEps whose labels to sync. */
export interface Affected {
  readonly services: Set<string>;
  readonly danmEps: Set<string>;
}

const none = (): Affected => ({ services: new Set(), danmEps: new Set() });

type Meta = { readonly metadata: { readonly namespace?: string; readonly name?: string } };
const keyOf = (o: Meta) => objectKey(o.metadata.namespace, o.metadata.name ?? "");

/** Objects by key plus a per-namespace index. */
class NamespacedStore<A extends Meta> {
  readonly byKey = new Map<string, A>();
  private readonly byNs = new Map<string, Map<string, A>>();

  set(key: string, o: A): A | undefined {
    const previous = this.byKey.get(key);
    if (previous) this.delete(key);
    this.byKey.set(key, o);
    const ns = o.metadata.namespace ?? "";
    let m = this.byNs.get(ns);
    if (!m) this.byNs.set(ns, m = new Map());
    m.set(o.metadata.name ?? "", o);
    return previous;
  }

  delete(key: string): A | undefined {
    const o = this.byKey.get(key);
    if (!o) return undefined;
    this.byKey.delete(key);
    const ns = o.metadata.namespace ?? "";
    const m = this.byNs.get(ns);
    m?.delete(o.metadata.name ?? "");
    if (m?.size === 0) this.byNs.delete(ns);
    return o;
  }

  clear(): void {
    this.byKey.clear();
    this.byNs.clear();
  }

  /** Objects of one namespace by name. */
  inNamespace(ns: string): ReadonlyMap<string, A> {
    return this.byNs.get(ns) ?? new Map();
  }
}

export type ParsedSelection =
  | { readonly _tag: "None" }
  | { readonly _tag: "Valid"; readonly selection: DanmServiceSelection }
  | { readonly _tag: "Invalid"; readonly error: AnnotationError };

/** The DANM selection a Service's annotations express (parsed once per Service version, not per pass). */
const parseSelection = (svc: Service): Effect.Effect<ParsedSelection> =>
  hasDanmAnnotations(svc.metadata.annotations)
    ? Effect.map(
      Effect.result(serviceSelection(svc.metadata.annotations)),
      (r): ParsedSelection =>
        r._tag === "Failure"
          ? { _tag: "Invalid", error: r.failure }
          : r.success === undefined
          ? { _tag: "None" }
          : { _tag: "Valid", selection: r.success },
    )
    : Effect.succeed({ _tag: "None" });

/** Adds `member` to (or removes it from) the set at `key` of a one-to-many index; empty sets are dropped. */
function indexSet(index: Map<string, Set<string>>, key: string, member: string, add: boolean): void {
  let s = index.get(key);
  if (add) {
    if (!s) index.set(key, s = new Set());
    s.add(member);
  } else if (s) {
    s.delete(member);
    if (s.size === 0) index.delete(key);
  }
}

export class ClusterView {
  readonly services = new NamespacedStore<Service>();
  /** Parsed DANM selection of every Service that has DANM annotations. */
  private readonly selections = new Map<string, ParsedSelection>();
  readonly pods = new NamespacedStore<Pod>();
  readonly danmEps = new NamespacedStore<DanmEp>();
  /** "namespace/pod" → keys of its DanmEps. */
  private readonly epsByPod = new Map<string, Set<string>>();
  readonly slices = new Map<string, EndpointSlice>();
  /** Service key → keys of the owned slices labelled with it. */
  private readonly slicesByService = new Map<string, Set<string>>();
  readonly endpoints = new Map<string, Endpoints>();

  private constructor(
    /** Bumped after every applied change; waiters watch it. */
    readonly version: SubscriptionRef.SubscriptionRef<number>,
  ) {}

  static make: Effect.Effect<ClusterView> = Effect.map(SubscriptionRef.make(0), (v) => new ClusterView(v));

  // ---- Reads ------------------------------------------------------------------------------------------------

  selectionOf(key: string): ParsedSelection {
    return this.selections.get(key) ?? { _tag: "None" };
  }

  slicesOf(serviceKey: string): ReadonlyArray<EndpointSlice> {
    return [...(this.slicesByService.get(serviceKey) ?? [])].flatMap((k) => this.slices.get(k) ?? []);
  }

  /** Whether svcwatcher has a reason to look at Service `key`: DANM annotations or objects we own. */
  isInteresting(key: string): boolean {
    return this.selections.has(key) || this.slicesByService.has(key) || this.endpoints.has(key);
  }

  /** Keys of every Service svcwatcher has a reason to look at: DANM annotations or objects we own. */
  interestingServices(): Set<string> {
    const out = new Set<string>(this.selections.keys());
    for (const k of this.slicesByService.keys()) out.add(k);
    for (const k of this.endpoints.keys()) out.add(k);
    return out;
  }

  /** Waits until `done()` holds for the view (checked after every change), at most `timeoutMs`. */
  awaitView(done: () => boolean, timeoutMs: number): Effect.Effect<boolean> {
    return SubscriptionRef.changes(this.version).pipe(
      Stream.filter(() => done()),
      Stream.take(1),
      Stream.runDrain,
      Effect.timeoutOption(timeoutMs),
      Effect.map((o) => o._tag === "Some"),
    );
  }

  private get bump(): Effect.Effect<void> {
    return SubscriptionRef.update(this.version, (n) => n + 1);
  }

  // ---- Writes from the informers ------------------------------------------------------------------------------

  private servicesSelecting(ns: string, labelSets: ReadonlyArray<Record<string, string> | undefined>): string[] {
    const out: string[] = [];
    for (const svc of this.services.inNamespace(ns).values()) {
      const key = keyOf(svc);
      const sel = this.selections.get(key);
      if (sel?._tag === "Valid" && labelSets.some((l) => selectorMatches(sel.selection, l))) out.push(key);
    }
    return out;
  }

  applyService(ev: InformerEvent<Service>): Effect.Effect<Affected> {
    const incoming: ReadonlyArray<readonly [string, Service]> = ev._tag === "Synced"
      ? [...ev.items]
      : ev._tag === "Deleted"
      ? []
      : [[ev.key, ev.object]];
    return Effect.forEach(incoming, ([key, svc]) => Effect.map(parseSelection(svc), (p) => [key, p] as const)).pipe(
      Effect.map((parsed) => this.applyParsedService(ev, new Map(parsed))),
      Effect.tap(() => this.bump),
    );
  }

  private putService(key: string, svc: Service, parsed: ParsedSelection | undefined) {
    this.services.set(key, svc);
    if (parsed === undefined || parsed._tag === "None") this.selections.delete(key);
    else this.selections.set(key, parsed);
  }

  private applyParsedService(ev: InformerEvent<Service>, parsed: ReadonlyMap<string, ParsedSelection>): Affected {
    const out = none();
    const interesting = (s: Service | undefined) =>
      s !== undefined &&
      (hasDanmAnnotations(s.metadata.annotations) || s.metadata.labels?.[EndpointControllerNameLabel] !== undefined);
    switch (ev._tag) {
      case "Synced": {
        const before = this.interestingServices();
        this.services.clear();
        this.selections.clear();
        for (const [key, svc] of ev.items) this.putService(key, svc, parsed.get(key));
        for (const k of [...before, ...this.interestingServices()]) out.services.add(k);
        for (const [key, svc] of ev.items) if (interesting(svc)) out.services.add(key);
        break;
      }
      case "Added":
      case "Updated": {
        const previous = ev._tag === "Updated" ? ev.previous : undefined;
        const hadOwned = this.isInteresting(ev.key);
        this.putService(ev.key, ev.object, parsed.get(ev.key));
        if (hadOwned || interesting(ev.object) || interesting(previous)) out.services.add(ev.key);
        break;
      }
      case "Deleted": {
        const had = this.isInteresting(ev.key) || interesting(ev.object);
        this.services.delete(ev.key);
        this.selections.delete(ev.key);
        if (had) out.services.add(ev.key);
        break;
      }
    }
    return out;
  }

  private podChanged(out: Affected, ns: string, name: string, labelSets: Array<Record<string, string> | undefined>) {
    const eps = this.epsByPod.get(`${ns}/${name}`) ?? new Set();
    for (const k of eps) {
      out.danmEps.add(k);
      labelSets.push(this.danmEps.byKey.get(k)?.metadata.labels);
    }
    for (const s of this.servicesSelecting(ns, labelSets)) out.services.add(s);
  }

  applyPod(ev: InformerEvent<Pod>): Effect.Effect<Affected> {
    return Effect.andThen(
      Effect.sync(() => {
        const out = none();
        switch (ev._tag) {
          case "Synced": {
            const namespaces = new Set<string>();
            for (const p of this.pods.byKey.values()) namespaces.add(p.metadata.namespace ?? "");
            this.pods.clear();
            for (const [key, pod] of ev.items) {
              this.pods.set(key, pod);
              namespaces.add(pod.metadata.namespace ?? "");
            }
            for (const ns of namespaces) {
              for (const svc of this.services.inNamespace(ns).values()) {
                const key = keyOf(svc);
                if (this.selections.get(key)?._tag === "Valid") out.services.add(key);
              }
            }
            for (const k of this.danmEps.byKey.keys()) out.danmEps.add(k);
            break;
          }
          case "Added":
          case "Updated": {
            this.pods.set(ev.key, ev.object);
            const labels = [ev.object.metadata.labels];
            if (ev._tag === "Updated") labels.push(ev.previous.metadata.labels);
            this.podChanged(out, ev.object.metadata.namespace ?? "", ev.object.metadata.name ?? "", labels);
            break;
          }
          case "Deleted": {
            this.pods.delete(ev.key);
            this.podChanged(out, ev.object.metadata.namespace ?? "", ev.object.metadata.name ?? "", [
              ev.object.metadata.labels,
            ]);
            break;
          }
        }
        return out;
      }),
      (out) => Effect.as(this.bump, out),
    );
  }

  private indexEp(key: string, ep: DanmEp | undefined, add: boolean) {
    if (!ep) return;
    indexSet(this.epsByPod, `${ep.metadata.namespace ?? ""}/${ep.spec.Pod}`, key, add);
  }

  applyDanmEp(ev: InformerEvent<DanmEp>): Effect.Effect<Affected> {
    return Effect.andThen(
      Effect.sync(() => {
        const out = none();
        switch (ev._tag) {
          case "Synced": {
            const namespaces = new Set<string>();
            for (const e of this.danmEps.byKey.values()) namespaces.add(e.metadata.namespace ?? "");
            this.danmEps.clear();
            this.epsByPod.clear();
            for (const [key, ep] of ev.items) {
              this.danmEps.set(key, ep);
              this.indexEp(key, ep, true);
              namespaces.add(ep.metadata.namespace ?? "");
              out.danmEps.add(key);
            }
            for (const ns of namespaces) {
              for (const svc of this.services.inNamespace(ns).values()) {
                const key = keyOf(svc);
                if (this.selections.get(key)?._tag === "Valid") out.services.add(key);
              }
            }
            break;
          }
          case "Added":
          case "Updated": {
            const previous = this.danmEps.set(ev.key, ev.object);
            this.indexEp(ev.key, previous, false);
            this.indexEp(ev.key, ev.object, true);
            out.danmEps.add(ev.key);
            const labels = [ev.object.metadata.labels, previous?.metadata.labels];
            for (const s of this.servicesSelecting(ev.object.metadata.namespace ?? "", labels)) out.services.add(s);
            break;
          }
          case "Deleted": {
            const previous = this.danmEps.delete(ev.key);
            this.indexEp(ev.key, previous ?? ev.object, false);
            const labels = [ev.object.metadata.labels, previous?.metadata.labels];
            for (const s of this.servicesSelecting(ev.object.metadata.namespace ?? "", labels)) out.services.add(s);
            break;
          }
        }
        return out;
      }),
      (out) => Effect.as(this.bump, out),
    );
  }

  private indexSlice(key: string, slice: EndpointSlice | undefined, add: boolean, out: Affected) {
    const svc = slice?.metadata.labels?.[ServiceNameLabel];
    if (!slice || svc === undefined) return;
    const svcKey = objectKey(slice.metadata.namespace, svc);
    out.services.add(svcKey);
    indexSet(this.slicesByService, svcKey, key, add);
  }

  /** Owned slices only (the informer selects on our managed-by label). */
  applySlice(ev: InformerEvent<EndpointSlice>): Effect.Effect<Affected> {
    return Effect.andThen(
      Effect.sync(() => {
        const out = none();
        if (ev._tag === "Synced") {
          for (const [key, s] of this.slices) this.indexSlice(key, s, false, out);
          this.slices.clear();
          for (const [key, s] of ev.items) {
            this.slices.set(key, s);
            this.indexSlice(key, s, true, out);
          }
        } else if (ev._tag === "Deleted") {
          this.indexSlice(ev.key, this.slices.get(ev.key) ?? ev.object, false, out);
          this.slices.delete(ev.key);
        } else {
          this.indexSlice(ev.key, this.slices.get(ev.key), false, out);
          this.slices.set(ev.key, ev.object);
          this.indexSlice(ev.key, ev.object, true, out);
        }
        return out;
      }),
      (out) => Effect.as(this.bump, out),
    );
  }

  /** Owned Endpoints only (the informer selects on our owner label). */
  applyEndpoints(ev: InformerEvent<Endpoints>): Effect.Effect<Affected> {
    return Effect.andThen(
      Effect.sync(() => {
        const out = none();
        if (ev._tag === "Synced") {
          for (const k of this.endpoints.keys()) out.services.add(k);
          this.endpoints.clear();
          for (const [key, e] of ev.items) {
            this.endpoints.set(key, e);
            out.services.add(key);
          }
        } else {
          if (ev._tag === "Deleted") this.endpoints.delete(ev.key);
          else this.endpoints.set(ev.key, ev.object);
          out.services.add(ev.key);
        }
        return out;
      }),
      (out) => Effect.as(this.bump, out),
    );
  }
}
