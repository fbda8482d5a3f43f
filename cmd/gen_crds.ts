// `deno task gen:crds`: writes the danm.io CRDs derived from core/api/danm.ts into crds/ (k8s/crds refers to it).
import "../adapters/runtime/effect_without_async_context.ts";
import { Effect } from "effect";
import { renderDanmCrds } from "../core/api/danm_crds.ts";

const root = new URL("../", import.meta.url);
for (const file of Effect.runSync(renderDanmCrds)) {
  await Deno.writeTextFile(new URL(file.path, root), file.content);
  console.log(`wrote ${file.path}`);
}
