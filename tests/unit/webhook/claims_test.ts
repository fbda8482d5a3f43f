// VNI claims (core/webhook/claims.ts) on the in-memory apiserver, where a race can be staged exactly.
import { Effect } from "effect";
import { LeaseResource } from "../../../core/api/k8s.ts";
import { makeClaims } from "../../../core/webhook/claims.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { makeMemoryKube } from "../../../adapters/kube/memory.ts";
import { assertEquals } from "../../harness/assert.ts";

const ns = "danm-claims";
const range = [{ start: 1000, end: 1010 }];
const holder = (name: string) => ({ namespace: "default", name, nonce: `nonce-${name}` });

Deno.test("claims: a marked claim deleted by the reconciler during the takeover is still taken: no ID is skipped", async () => {
  await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
    const kube = yield* makeMemoryKube();
    // The reconciler's delete (the network's watch event) lands between the takeover's read and its update.
    let raced = 0;
    const racing: KubeService = {
      ...kube,
      update: ((rt, obj, o) =>
        rt === LeaseResource && raced++ === 0
          ? Effect.andThen(
            kube.delete(LeaseResource, (obj as { metadata: { name?: string } }).metadata.name ?? "", { namespace: ns }),
            kube.update(rt, obj, o),
          )
          : kube.update(rt, obj, o)) as KubeService["update"],
    };
    const claims = yield* makeClaims({ namespace: ns, graceSeconds: 120 }).pipe(Effect.provideService(Kube, racing));
    const claim = (name: string) =>
      claims.claimLowest({
        device: "ens4",
        type: "vlan",
        range,
        inUse: () => false,
        holder: holder(name),
      });
    assertEquals(yield* claim("a"), 1000);
    // Network a is being deleted (it was never stored here, so nothing carries the claim).
    yield* claims.markReleased({ device: "ens4", type: "vlan", id: 1000 }, holder("a"));
    assertEquals(yield* claim("c"), 1000);
    assertEquals(raced, 1, "the race was staged");
  })));
});
