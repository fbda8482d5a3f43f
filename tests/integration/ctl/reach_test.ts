// `danmctl dry-run reach` against the real apiserver, run as a process the way an operator runs it: the pods,
// DanmEps and MultiNetworkPolicy are read through the live Kube layer; exit 0 allowed, 3 denied, 1 for an error.
import { Effect, Layer } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import type { Kube } from "../../../core/ports/kube.ts";
import { seedReachWorld } from "../../fixtures/netpol/reach_world.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { repoRoot } from "../../harness/proc.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { restClient } from "../api/rest.ts";

Deno.test("danmctl dry-run reach: allowed and denied with the deciding rule, on the live cluster", async () => {
  const cluster = await useCluster();
  const rest = restClient(cluster.kubeConfig);
  const namespace = uniqueName("reach");
  try {
    await installDanmCrds(cluster.kubeConfig);
    assertEquals((await rest.call("POST", "/api/v1/namespaces", { metadata: { name: namespace } })).status, 201);
    const kube = layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Layer.orDie);
    const run = <A, E>(p: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provide(p, kube));
    const w = await run(seedReachWorld("live", namespace));
    const danmctl = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `${repoRoot}/cmd/danmctl.ts`,
          ...args,
          "-n",
          namespace,
          "--kubeconfig",
          cluster.kubeconfigPath,
        ],
        stdin: "null",
      }).output();
      const d = new TextDecoder();
      return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
    };

    const ok = await danmctl("dry-run", "reach", w.cli, w.srv, w.network, "8080/TCP");
    assertEquals(ok.code, 0, ok.stderr);
    assertMatch(
      ok.stdout,
      new RegExp(
        `^${namespace}/${w.cli} → ${namespace}/${w.srv} on DanmNet:${namespace}/${w.network}, TCP/8080: ALLOWED`,
      ),
    );
    assertMatch(
      ok.stdout,
      new RegExp(
        `10\\.66\\.0\\.2 → 10\\.66\\.0\\.1 TCP/8080: allowed — egress not isolated; ingress allowed by ${namespace}/${w.policy} ingress rule 0`,
      ),
    );
    assertMatch(ok.stdout, /fd00:66::2 → fd00:66::1 TCP\/8080: allowed/);

    const denied = await danmctl("dry-run", "reach", w.other, w.srv, w.network, "8080", "-o", "json");
    assertEquals(denied.code, 3, denied.stderr);
    const answer = JSON.parse(denied.stdout);
    assertEquals([answer.allowed, answer.protocol, answer.port], [false, "TCP", 8080]);
    assert(
      answer.paths.every((p: { ingress: { isolated: boolean; allowed: boolean; policies: string[] } }) =>
        p.ingress.isolated && !p.ingress.allowed && p.ingress.policies[0] === `${namespace}/${w.policy}`
      ),
    );

    const bad = await danmctl("dry-run", "reach", w.cli, "ghost", w.network, "80");
    assertEquals(bad.code, 1);
    assertMatch(bad.stderr, new RegExp(`pod ${namespace}/ghost does not exist`));
    assertEquals((await danmctl("dry-run", "reach", w.cli, w.srv)).code, 2, "misuse");
  } finally {
    // The test apiserver runs no namespace controller: the objects go one by one, then their namespace.
    for (
      const collection of [
        `/apis/k8s.cni.cncf.io/v1beta1/namespaces/${namespace}/multi-networkpolicies`,
        `/apis/danm.io/v1/namespaces/${namespace}/danmeps`,
        `/api/v1/namespaces/${namespace}/pods?gracePeriodSeconds=0`,
      ]
    ) await rest.call("DELETE", collection);
    await rest.call("DELETE", `/api/v1/namespaces/${namespace}`);
    rest.close();
    await cluster.release();
  }
});
