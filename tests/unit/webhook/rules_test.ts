// Every single-object rule through the admission endpoints (mutate, then validate the patched object), against
// the in-memory apiserver: one refused and one admitted case each, with the message or the mutation.
import { Effect } from "effect";
import { fail } from "../../harness/assert.ts";
import { networkCases, type RuleCase, tenantConfigCases } from "./cases.ts";
import { type Json, message, withEnv } from "./harness.ts";

function objectOf(c: RuleCase, name: string): Json {
  const namespaced = c.kind === "DanmNet" || c.kind === "TenantNetwork";
  return {
    apiVersion: "danm.io/v1",
    kind: c.kind,
    metadata: { name, ...(namespaced ? { namespace: "default" } : {}) },
    ...c.body,
  };
}

for (const c of [...networkCases, ...tenantConfigCases]) {
  Deno.test(`rule ${c.rule}: ${c.kind}: ${c.title}`, () =>
    withEnv((env) =>
      Effect.gen(function* () {
        const name = `case-${c.rule}`.slice(0, 50);
        const { response, object } = yield* env.admit("CREATE", objectOf(c, name));
        if ("denied" in c.expect) {
          if (response.response.allowed) return fail(`admitted, expected a refusal matching ${c.expect.denied}`);
          const m = message(response);
          const subject = `${c.kind} ${c.kind === "DanmNet" || c.kind === "TenantNetwork" ? "default/" : ""}${name}: `;
          if (!m.startsWith(subject)) fail(`message does not name the object (${subject}): ${m}`);
          if (!c.expect.denied.test(m)) fail(`message ${JSON.stringify(m)} does not match ${c.expect.denied}`);
          const causes = response.response.status?.details?.causes ?? [];
          if (!causes.some((k) => k.reason === c.rule)) {
            fail(`no cause names rule ${c.rule}: ${JSON.stringify(causes)}`);
          }
        } else {
          if (!response.response.allowed) return fail(`refused: ${message(response)}`);
          c.expect.allowed(object);
        }
      })
    ));
}
