// The HTTPS server of the webhook (core/webhook/server.ts via main.ts) over the in-memory apiserver: routes,
// status codes, metrics, and the serving certificate reloaded when its files change.
import { Effect } from "effect";
import { layerMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { type RunningWebhook, startWebhook } from "../../../core/webhook/main.ts";
import { createCa, issueServingCertificate, type PemPair } from "../../../core/webhook/x509.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../harness/assert.ts";
import { review } from "./harness.ts";

const pair = async (caName: string) => {
  const ca = await Effect.runPromise(createCa(caName, 30));
  const leaf = await Effect.runPromise(
    issueServingCertificate(ca, {
      commonName: "localhost",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 5,
    }),
  );
  return { ca, leaf };
};

async function withServer(body: (w: RunningWebhook, files: { dir: string; ca: PemPair }) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "danm-webhook-server-" });
  const { ca, leaf } = await pair("first-ca");
  await Deno.writeTextFile(`${dir}/tls.crt`, leaf.certPem);
  await Deno.writeTextFile(`${dir}/tls.key`, leaf.keyPem);
  const server = new MemoryApiServer();
  try {
    await Effect.runPromise(
      Effect.scoped(Effect.gen(function* () {
        const w = yield* startWebhook({
          hostname: "127.0.0.1",
          port: 0,
          certFile: `${dir}/tls.crt`,
          keyFile: `${dir}/tls.key`,
          certReloadIntervalMs: 50,
          claimNamespace: "danm-system",
          claimGraceSeconds: 120,
          sweepIntervalMs: 3_600_000,
          namingScheme: "",
        });
        yield* Effect.promise(() => body(w, { dir, ca }));
      })).pipe(Effect.provide(layerMemoryKube(server))),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const call = async (client: Deno.HttpClient, port: number, path: string, init: RequestInit = {}) => {
  const r = await fetch(`https://localhost:${port}${path}`, { client, ...init });
  return { status: r.status, text: await r.text() };
};

Deno.test("server: health, readiness, metrics and the two admission endpoints over TLS", () =>
  withServer(async (w, { ca }) => {
    const client = Deno.createHttpClient({ caCerts: [ca.certPem] });
    try {
      const port = w.server.port;
      assertEquals(await call(client, port, "/healthz"), { status: 200, text: "ok\n" });
      const deadline = Date.now() + 3000;
      while ((await call(client, port, "/readyz")).status !== 200) {
        assert(Date.now() < deadline, "ready within 3 s");
        await new Promise((r) => setTimeout(r, 20));
      }
      const body = JSON.stringify(
        review("CREATE", { kind: "DanmNet", metadata: { name: "n", namespace: "default" }, spec: { NetworkID: "n" } }),
      );
      const mutated = await call(client, port, "/mutate", {
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
      });
      assertEquals(mutated.status, 200);
      const resp = JSON.parse(mutated.text).response;
      assertEquals(resp.allowed, true);
      assertEquals(JSON.parse(atob(resp.patch)), [{ op: "add", path: "/spec/NetworkType", value: "ipvlan" }]);
      const validated = await call(client, port, "/validate", { method: "POST", body });
      assertEquals(JSON.parse(validated.text).response.allowed, true);
      assertEquals((await call(client, port, "/validate")).status, 405);
      assertEquals((await call(client, port, "/validate", { method: "POST", body: "{" })).status, 400);
      const notReview = await call(client, port, "/validate", { method: "POST", body: '{"kind":"Pod"}' });
      assertEquals(notReview.status, 400);
      assertMatch(notReview.text, /not an admission\.k8s\.io\/v1 AdmissionReview/);
      assertEquals((await call(client, port, "/nope")).status, 404);
      const metrics = await call(client, port, "/metrics");
      assertMatch(
        metrics.text,
        /danm_webhook_admission_requests_total\{endpoint="mutate",kind="DanmNet",operation="CREATE",result="allowed"\} 1/,
      );
      assertMatch(metrics.text, /danm_webhook_admission_duration_seconds_count\{endpoint="validate"\} 1/);
      assertMatch(metrics.text, /danm_webhook_ready 1/);
    } finally {
      client.close();
    }
  }));

Deno.test("server: a changed certificate is picked up without a restart; a broken pair keeps the old one", () =>
  withServer(async (w, { dir, ca }) => {
    const next = await pair("second-ca");
    const oldClient = Deno.createHttpClient({ caCerts: [ca.certPem] });
    const newClient = Deno.createHttpClient({ caCerts: [next.ca.certPem] });
    try {
      const port = w.server.port;
      assertEquals((await call(oldClient, port, "/healthz")).status, 200);
      assertEquals(w.server.generation(), 1);
      // A key that does not load: the old listener stays.
      await Deno.writeTextFile(`${dir}/tls.key`, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
      await new Promise((r) => setTimeout(r, 300));
      assertEquals(w.server.generation(), 1);
      assertEquals((await call(oldClient, port, "/healthz")).status, 200);
      await Deno.writeTextFile(`${dir}/tls.key`, next.leaf.keyPem);
      await Deno.writeTextFile(`${dir}/tls.crt`, next.leaf.certPem);
      const deadline = Date.now() + 5000;
      while (w.server.generation() < 2) {
        assert(Date.now() < deadline, "reloaded within 5 s");
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals((await call(newClient, port, "/healthz")).status, 200);
      // New connections present the new certificate (the old client's pooled connection would not tell).
      const fresh = Deno.createHttpClient({ caCerts: [ca.certPem] });
      try {
        await assertRejects(() => call(fresh, port, "/healthz"));
      } finally {
        fresh.close();
      }
    } finally {
      oldClient.close();
      newClient.close();
    }
  }));
