// `deno task gen:crds`: writes the danm.io CRDs derived from core/api/danm.ts into crds/ and k8s/crds/.
import "../adapters/runtime/effect_without_async_context.ts";
import { Effect } from "effect";
import { renderDanmCrds } from "../core/api/danm_crds.ts";

const root = new URL("../", import.meta.url);
// k8s/crds holds the same files for the kustomize base (kustomize reads nothing outside its root).
for (const file of Effect.runSync(renderDanmCrds)) {
  for (const path of [file.path, file.path.replace(/^crds\//, "k8s/crds/")]) {
    await Deno.writeTextFile(new URL(path, root), file.content);
    console.log(`wrote ${path}`);
  }
}
