// DANM v4.3.0's own example manifests (tests/fixtures/danm-compat/v4.3.0/example), read as danm serves them.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { repoRoot } from "./proc.ts";

type Json = Record<string, unknown>;

/** danm serves the group `danm.io`; DANM v4.3.0's `danm.k8s.io` objects are moved there (what `danmctl migrate`
 * does to a running installation). Annotation keys stay as written: `danm.k8s.io/…` is read as is. */
const asDanmIo = (doc: Json): Json => doc.apiVersion === "danm.k8s.io/v1" ? { ...doc, apiVersion: "danm.io/v1" } : doc;

/** The objects of one example file (`file` under example/, e.g. `4_0_examples/1_good_tconf.yaml`), in danm.io. */
export const danmExample = (file: string): Json[] =>
  (yaml.loadAll(Deno.readTextFileSync(`${repoRoot}/tests/fixtures/danm-compat/v4.3.0/example/${file}`)) as unknown[])
    .filter((d): d is Json => typeof d === "object" && d !== null)
    .map(asDanmIo);
