// DANM's own manifests (the compatibility test data) and small helpers shared by the api tests of both tiers.
import { Effect, Result } from "effect";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { fail } from "../../harness/assert.ts";

/** DANM's files (example/, schema/, integration/); see README.md there. */
export const compatDir = Deno.env.get("DANM_COMPAT_DIR") ??
  new URL("../../fixtures/danm-compat", import.meta.url).pathname;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface Manifest {
  /** Relative to compatDir, with the document index when the file holds several. */
  readonly source: string;
  readonly doc: JsonObject;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The YAML documents of one file (relative to compatDir). */
export function manifestsIn(file: string): Manifest[] {
  const docs = yaml.loadAll(Deno.readTextFileSync(`${compatDir}/${file}`)).filter((d) => d !== null && d !== undefined);
  return docs.map((doc, i) => {
    if (!isObject(doc)) fail(`${file}: document ${i} is not an object`);
    return { source: docs.length > 1 ? `${file}#${i}` : file, doc };
  });
}

/** Every YAML document of every file under `dir` (relative to compatDir), in path order. */
export function manifestsUnder(dir: string): Manifest[] {
  const files: string[] = [];
  const walk = (rel: string) => {
    for (const e of [...Deno.readDirSync(`${compatDir}/${rel}`)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (/\.ya?ml$/.test(e.name)) files.push(p);
    }
  };
  walk(dir);
  if (files.length === 0) fail(`no manifests under ${compatDir}/${dir}`);
  return files.flatMap(manifestsIn);
}

/** The single document of `file`. */
export function manifest(file: string): JsonObject {
  const [m, ...more] = manifestsIn(file);
  if (!m || more.length) fail(`expected exactly one document in ${file}`);
  return m.doc;
}

/** Drops null members recursively, as the apiserver does for fields that are not nullable. */
export function withoutNulls(v: Json): Json {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (isObject(v)) {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, withoutNulls(x)]));
  }
  return v;
}

export function ok<A, E>(effect: Effect.Effect<A, E>): A {
  const r = Effect.runSync(Effect.result(effect));
  if (Result.isFailure(r)) fail(`expected success, got: ${r.failure instanceof Error ? r.failure.message : r.failure}`);
  return r.success;
}

export function err<A, E>(effect: Effect.Effect<A, E>): E {
  const r = Effect.runSync(Effect.result(effect));
  if (Result.isSuccess(r)) fail(`expected a failure, got: ${JSON.stringify(r.success)}`);
  return r.failure;
}
