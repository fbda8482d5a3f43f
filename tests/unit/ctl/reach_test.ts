// `danmctl dry-run reach` on the in-memory apiserver: allowed/denied with the deciding policy rule, per address
// family; argument errors; a cluster without the MultiNetworkPolicy CRD or any policy is open.
import { Effect, Result } from "effect";
import { layerMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { parsePortArg, reach, type ReachArgs, renderReach } from "../../../core/ctl/reach.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { type DanmEp, DanmEpResource } from "../../../core/api/danm.ts";
import { MultiNetworkPolicyResource } from "../../../core/api/netpol.ts";
import { type ReachWorld, seedReachWorld } from "../../fixtures/netpol/reach_world.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";

const withWorld = <A>(body: (w: ReachWorld) => Effect.Effect<A, unknown, Kube>) =>
  Effect.runPromise(
    Effect.flatMap(seedReachWorld("t"), body).pipe(Effect.provide(layerMemoryKube(new MemoryApiServer()))),
  );
const ask = (args: ReachArgs) => Effect.result(reach(args));

Deno.test("reach: allowed by the rule that names the port; denied to others, other ports, other protocols", async () => {
  await withWorld((w) =>
    Effect.gen(function* () {
      const ok = yield* reach({ from: w.cli, to: w.srv, network: w.network, port: "8080" });
      assert(ok.allowed);
      assertEquals([ok.from, ok.to, ok.network, ok.protocol, ok.port], [
        `default/${w.cli}`,
        `default/${w.srv}`,
        `DanmNet:default/${w.network}`,
        "TCP",
        8080,
      ]);
      assertEquals(ok.paths.map((p) => [p.family, p.source, p.destination, p.ingress.allowedBy]), [
        [4, "10.66.0.2", "10.66.0.1", [{ policy: `default/${w.policy}`, rule: 0 }]],
        [6, "fd00:66::2", "fd00:66::1", [{ policy: `default/${w.policy}`, rule: 0 }]],
      ]);
      assertMatch(renderReach(ok), /^default\/cli-t → default\/srv-t on DanmNet:default\/data-t, TCP\/8080: ALLOWED\n/);
      assertMatch(renderReach(ok), /ingress allowed by default\/srv-ingress-t ingress rule 0/);
      // UDP 53 is allowed too; TCP 53, UDP 8080, another pod are not.
      assert((yield* reach({ from: w.cli, to: w.srv, network: w.network, port: "53/udp" })).allowed);
      for (const [from, port] of [[w.cli, "53"], [w.cli, "8080/UDP"], [w.other, "8080"], [w.cli, "8081/tcp"]]) {
        const no = yield* reach({ from, to: w.srv, network: w.network, port });
        assert(!no.allowed, `${from} ${port}`);
        assertMatch(renderReach(no), /: DENIED\n/);
        assertMatch(renderReach(no), /ingress denied \(isolated by default\/srv-ingress-t; no rule allows it\)/);
      }
      // srv's egress and cli's ingress are not isolated: the reverse way is open.
      const back = yield* reach({ from: w.srv, to: w.cli, network: `default/${w.network}`, port: "22" });
      assert(back.allowed);
      assertMatch(renderReach(back), /egress not isolated; ingress not isolated/);
    })
  );
});

Deno.test("reach: bad arguments and unknown pods are errors naming them; a network a pod is not on is denied", async () => {
  await withWorld((w) =>
    Effect.gen(function* () {
      const error = (r: Result.Result<unknown, { message: string }>) =>
        Result.isFailure(r) ? r.failure.message : "succeeded";
      assertMatch(
        error(yield* ask({ from: w.cli, to: "nope", network: w.network, port: "80" })),
        /pod default\/nope does not exist/,
      );
      assertMatch(
        error(yield* ask({ from: w.cli, to: w.srv, network: "a,b", port: "80" })),
        /network "a,b": name one network/,
      );
      assertMatch(
        error(yield* ask({ from: w.cli, to: w.srv, network: w.network, port: "http" })),
        /port "http": expected PORT/,
      );
      const off = yield* reach({ from: w.cli, to: w.srv, network: "ClusterNetwork/elsewhere", port: "80" });
      assert(!off.allowed);
      assertEquals(off.reasons, [`default/${w.cli} has no interface on ClusterNetwork:elsewhere`]);
    })
  );
  assertEquals(parsePortArg("80"), { port: 80, protocol: "TCP" });
  assertEquals(parsePortArg("5060/sctp"), { port: 5060, protocol: "SCTP" });
  for (const bad of ["0", "65536", "80/icmp", "80/", "-1", ""]) assertEquals(parsePortArg(bad), undefined, bad);
});

Deno.test("reach: without any policy every path is open; a terminated pod is not there", async () => {
  await withWorld((w) =>
    Effect.gen(function* () {
      const kube = yield* Kube;
      yield* kube.delete(MultiNetworkPolicyResource, w.policy, { namespace: "default" });
      // A DanmEp an earlier srv (another pod UID) left behind is not one of srv's interfaces.
      yield* kube.create(DanmEpResource, {
        metadata: { name: "stale-ep", namespace: "default" },
        spec: {
          NetworkName: w.network,
          EndpointID: "stale",
          Pod: w.srv,
          PodUID: "an-earlier-uid",
          Interface: { Name: "data9", Address: "10.66.0.99/24" },
        },
      } as DanmEp);
      const open = yield* reach({ from: w.other, to: w.srv, network: w.network, port: "9/udp" });
      assert(open.allowed);
      assertEquals(
        open.paths.map((p) => p.destination),
        ["10.66.0.1", "fd00:66::1"],
        "IPv4 and IPv6, no stale address",
      );
      const pod = yield* kube.get(PodResource, w.cli, { namespace: "default" });
      yield* kube.updateStatus(PodResource, { ...pod, status: { phase: "Succeeded" } });
      const r = yield* ask({ from: w.cli, to: w.srv, network: w.network, port: "80" });
      assertMatch(Result.isFailure(r) ? r.failure.message : "succeeded", /pod default\/cli-t does not exist/);
    })
  );
});
