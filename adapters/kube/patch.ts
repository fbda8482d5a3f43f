// Patch semantics for the memory store: RFC 7386 merge patch, RFC 6902 JSON patch, and an approximation of
// server-side apply that tracks which fields each apply manager owns.
import { Predicate } from "effect";
import type { JsonPatchOperation } from "../../core/ports/kube.ts";

export type JsonObject = { [key: string]: unknown };

export class PatchError extends Error {
  override name = "PatchError";
}

export const isJsonObject = (v: unknown): v is JsonObject => Predicate.isObject(v);

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isJsonObject(a) && isJsonObject(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

/**
 * A deep copy of a JSON value. Plain objects and arrays are copied by hand — many times faster than structuredClone
 * for the small objects the memory store copies on every write; anything else is left to structuredClone.
 */
export function clone<T>(v: T): T {
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) return v.map(clone) as T;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return structuredClone(v);
  const out: JsonObject = {};
  // Deno has no Object.prototype.__proto__ setter: an own "__proto__" key (JSON.parse makes one) stays a key.
  for (const [k, x] of Object.entries(v)) out[k] = clone(x);
  return out as T;
}

/** RFC 7386: objects merge recursively, null deletes, everything else (arrays included) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isJsonObject(patch)) return clone(patch);
  const out: JsonObject = isJsonObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function parsePointer(p: string): string[] {
  if (p === "") return [];
  if (!p.startsWith("/")) throw new PatchError(`invalid JSON pointer "${p}"`);
  return p.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

type Container = JsonObject | unknown[];

function resolveParent(doc: unknown, parts: string[], path: string): { parent: Container; key: string } {
  let cur: unknown = doc;
  for (const part of parts.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, part, path, false)];
    else if (isJsonObject(cur) && Object.hasOwn(cur, part)) cur = cur[part];
    else throw new PatchError(`path "${path}" does not exist`);
  }
  if (!Array.isArray(cur) && !isJsonObject(cur)) throw new PatchError(`path "${path}" does not exist`);
  return { parent: cur, key: parts[parts.length - 1] };
}

function arrayIndex(arr: unknown[], key: string, path: string, forInsert: boolean): number {
  if (forInsert && key === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(key)) throw new PatchError(`invalid array index "${key}" in "${path}"`);
  const i = Number(key);
  if (i > arr.length || (!forInsert && i === arr.length)) throw new PatchError(`index ${i} out of range in "${path}"`);
  return i;
}

function getAt(doc: unknown, path: string): unknown {
  const parts = parsePointer(path);
  if (parts.length === 0) return doc;
  const { parent, key } = resolveParent(doc, parts, path);
  if (Array.isArray(parent)) return parent[arrayIndex(parent, key, path, false)];
  if (!Object.hasOwn(parent, key)) throw new PatchError(`path "${path}" does not exist`);
  return parent[key];
}

function addAt(doc: unknown, path: string, value: unknown): unknown {
  const parts = parsePointer(path);
  if (parts.length === 0) return clone(value);
  const { parent, key } = resolveParent(doc, parts, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, true), 0, clone(value));
  else parent[key] = clone(value);
  return doc;
}

function removeAt(doc: unknown, path: string): unknown {
  const parts = parsePointer(path);
  if (parts.length === 0) throw new PatchError("cannot remove the whole document");
  const { parent, key } = resolveParent(doc, parts, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, false), 1);
  else if (Object.hasOwn(parent, key)) delete parent[key];
  else throw new PatchError(`path "${path}" does not exist`);
  return doc;
}

/** RFC 6902. Works on a copy; throws PatchError (the apiserver answers 422) when an operation cannot apply. */
export function jsonPatch(doc: unknown, ops: ReadonlyArray<JsonPatchOperation>): unknown {
  let out = clone(doc);
  for (const op of ops) {
    switch (op.op) {
      case "add":
        out = addAt(out, op.path, op.value);
        break;
      case "remove":
        out = removeAt(out, op.path);
        break;
      case "replace":
        getAt(out, op.path);
        out = parsePointer(op.path).length === 0 ? clone(op.value) : addAt(removeAt(out, op.path), op.path, op.value);
        break;
      case "move": {
        if (op.from === undefined) throw new PatchError(`"move" needs "from"`);
        const v = getAt(out, op.from);
        out = addAt(removeAt(out, op.from), op.path, v);
        break;
      }
      case "copy": {
        if (op.from === undefined) throw new PatchError(`"copy" needs "from"`);
        out = addAt(out, op.path, getAt(out, op.from));
        break;
      }
      case "test":
        if (!deepEqual(getAt(out, op.path), op.value)) {
          throw new PatchError(`testing value ${op.path} failed`);
        }
        break;
    }
  }
  return out;
}

// --- Server-side apply (approximation) -------------------------------------------------------------------
//
// Each apply manager owns the leaf paths it last applied (maps are granular, lists atomic). Applying merges the
// configuration into the object, removes fields the manager applied before but no longer does (unless another
// manager owns them too), and fails with a conflict when another manager owns a field the configuration sets to
// a different value, unless forced (the fields then change owner). Managers of plain updates and patches are not
// tracked, so those never conflict with an apply; the real apiserver would report them.

/** Fields no manager owns: identity and system-maintained metadata. */
const unowned = new Set([
  "/apiVersion",
  "/kind",
  "/metadata/name",
  "/metadata/namespace",
  "/metadata/generateName",
  "/metadata/uid",
  "/metadata/resourceVersion",
  "/metadata/generation",
  "/metadata/creationTimestamp",
  "/metadata/deletionTimestamp",
  "/metadata/deletionGracePeriodSeconds",
  "/metadata/managedFields",
]);

const escapeToken = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");

export function leafPaths(obj: unknown, prefix = ""): string[] {
  if (!isJsonObject(obj)) return prefix === "" ? [] : [prefix];
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const p = `${prefix}/${escapeToken(k)}`;
    if (unowned.has(p)) continue;
    if (isJsonObject(v) && Object.keys(v).length > 0) out.push(...leafPaths(v, p));
    else out.push(p);
  }
  return out;
}

const dotted = (p: string) => p.split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~")).join(".");

export type Ownership = ReadonlyMap<string, ReadonlySet<string>>;

export interface ApplyResult {
  readonly object: JsonObject;
  readonly owners: Ownership;
}

const valueAt = (doc: unknown, path: string): { found: boolean; value?: unknown } => {
  try {
    return { found: true, value: getAt(doc, path) };
  } catch {
    return { found: false };
  }
};

/**
 * Applies `config` for `manager` on top of `existing` (undefined: the object is being created). Returns the
 * new object and ownership, or the list of conflicts as "manager: .dotted.path" strings.
 */
export function serverSideApply(
  existing: JsonObject | undefined,
  config: JsonObject,
  manager: string,
  owners: Ownership,
  force: boolean,
): ApplyResult | { readonly conflicts: ReadonlyArray<string> } {
  const paths = leafPaths(config);
  const next = new Map<string, Set<string>>([...owners].map(([m, s]) => [m, new Set(s)]));
  const conflicts: string[] = [];
  for (const p of paths) {
    for (const [m, owned] of next) {
      if (m === manager || !owned.has(p)) continue;
      const cur = valueAt(existing, p), want = valueAt(config, p);
      if (cur.found && deepEqual(cur.value, want.value)) continue; // same value: ownership is shared
      if (force) owned.delete(p);
      else conflicts.push(`conflict with "${m}": ${dotted(p)}`);
    }
  }
  if (conflicts.length > 0) return { conflicts };

  let object = mergeApply(existing ?? {}, config);
  const previous = next.get(manager) ?? new Set<string>();
  const now = new Set(paths);
  for (const p of previous) {
    if (now.has(p)) continue;
    const sharedWith = [...next].some(([m, owned]) => m !== manager && owned.has(p));
    if (!sharedWith && valueAt(object, p).found) object = removeAt(object, p) as JsonObject;
  }
  next.set(manager, now);
  for (const [m, owned] of next) if (owned.size === 0) next.delete(m);
  return { object, owners: next };
}

/** Like a merge patch, but a configuration never deletes (null is just a value to set). */
function mergeApply(target: unknown, config: unknown): JsonObject {
  const out: JsonObject = isJsonObject(target) ? clone(target) : {};
  if (!isJsonObject(config)) return out;
  for (const [k, v] of Object.entries(config)) {
    out[k] = isJsonObject(v) ? mergeApply(out[k], v) : clone(v);
  }
  return out;
}
