// AdmissionReview decoding, responses and the JSON patches the mutating endpoint sends.
import { Effect } from "effect";
import { jsonPatch } from "../../../adapters/kube/patch.ts";
import { decodeReview, jsonDiff } from "../../../core/webhook/review.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { message, review, withEnv } from "./harness.ts";

const decodeError = (body: unknown) =>
  Effect.runPromise(Effect.match(decodeReview(body), { onSuccess: () => "decoded", onFailure: (e) => e.message }));

Deno.test("review: anything but an admission.k8s.io/v1 AdmissionReview with a request is refused, naming the field", async () => {
  const good = review("CREATE", { kind: "DanmNet", metadata: { name: "x", namespace: "d" }, spec: {} });
  assertEquals(await decodeError(good), "decoded");
  assertMatch(await decodeError({ ...good, apiVersion: "admission.k8s.io/v1beta1" }), /apiVersion/);
  const { uid: _uid, ...noUid } = good.request;
  assertMatch(await decodeError({ ...good, request: noUid }), /request\.uid/);
  assertMatch(await decodeError({ ...good, request: { ...good.request, operation: "PATCH" } }), /request\.operation/);
  assertMatch(await decodeError("[]"), /not an admission\.k8s\.io\/v1 AdmissionReview/);
});

Deno.test("review: jsonDiff produces a patch that turns one object into the other", () => {
  const before = {
    metadata: { name: "a", annotations: { "x/y~z": "1" } },
    spec: { A: 1, B: { c: [1, 2] }, gone: true },
  };
  const after = {
    metadata: { name: "a", annotations: { "x/y~z": "2", "danm.io/vni-claim": "n" } },
    spec: { A: 1, B: { c: [1, 2, 3] }, NetworkType: "ipvlan" },
  };
  const ops = jsonDiff(before, after);
  assertEquals(jsonPatch(structuredClone(before), ops), after);
  assert(ops.every((o) => !o.path.startsWith("/spec/A")), "unchanged fields are not in the patch");
  assertEquals(jsonDiff(after, structuredClone(after)), []);
});

Deno.test("review: the endpoints answer with the request's uid; kinds that are not ours pass untouched", () =>
  withEnv((env) =>
    Effect.gen(function* () {
      const r = review("CREATE", { kind: "ConfigMap", metadata: { name: "c", namespace: "d" } }, { group: "" });
      const out = yield* env.validate(r);
      assertEquals(out.response, { uid: r.request.uid, allowed: true });
      const m = yield* env.mutate(review("CREATE", { kind: "TenantConfig", metadata: { name: "t" } }));
      assertEquals([m.response.allowed, m.response.patch], [true, undefined]);
      // A status update is not judged either.
      const status = review("UPDATE", {
        kind: "DanmNet",
        metadata: { name: "s", namespace: "d" },
        spec: { vlan: "x" },
      });
      const s = yield* env.validate({ ...status, request: { ...status.request, subResource: "status" } });
      assert(s.response.allowed, "status subresource passes");
      // A malformed object is a 403 with the decoding problem, not a crash.
      const bad = yield* env.validate(review("CREATE", { kind: "DanmNet", metadata: { name: "b", namespace: "d" } }));
      assertEquals(bad.response.status?.code, 403);
      assertMatch(message(bad), /^DanmNet d\/b: spec: required field is missing$/);
      const counted = env.metrics.requests.get({
        endpoint: "validate",
        kind: "DanmNet",
        operation: "CREATE",
        result: "denied",
      });
      assertEquals(counted, 1);
    })
  ));
