// The HTTPS server of the webhook (core/webhook/server.ts via main.ts) over the in-memory apiserver: routes,
// status codes, metrics, and the serving certificate reloaded when its files change. Each test runs on the live
// Fs and Http layers (a temporary directory, Deno.serve on 127.0.0.1) and on their memory twins.
import { Effect, Layer } from "effect";
import { layerLiveFs } from "../../../adapters/fs/live.ts";
import { layerMemoryFs, MemoryFileSystem } from "../../../adapters/fs/memory.ts";
import { layerLiveHttp } from "../../../adapters/http/live.ts";
import { layerMemoryHttp, MemoryHttpNetwork } from "../../../adapters/http/memory.ts";
import { layerMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import type { Fs } from "../../../core/ports/filesystem.ts";
import type { Http } from "../../../core/ports/http.ts";
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

interface Reply {
  readonly status: number;
  readonly text: string;
}

/** A client trusting one CA; each `call` goes to https://localhost:<port><path>. */
interface Client {
  readonly call: (port: number, path: string, init?: RequestInit) => Promise<Reply>;
  readonly close: () => void;
}

interface Platform {
  readonly layer: Layer.Layer<Fs | Http>;
  readonly dir: string;
  readonly write: (path: string, text: string) => Promise<void>;
  readonly client: (caPem: string) => Client;
  readonly release: () => Promise<void>;
}

const platforms: Record<string, () => Promise<Platform>> = {
  live: async () => {
    const dir = await Deno.makeTempDir({ prefix: "danm-webhook-server-" });
    return {
      layer: Layer.merge(layerLiveFs, layerLiveHttp),
      dir,
      write: (path, text) => Deno.writeTextFile(path, text),
      client: (caPem) => {
        const client = Deno.createHttpClient({ caCerts: [caPem] });
        return {
          call: async (port, path, init = {}) => {
            const r = await fetch(`https://localhost:${port}${path}`, { client, ...init });
            return { status: r.status, text: await r.text() };
          },
          close: () => client.close(),
        };
      },
      release: () => Deno.remove(dir, { recursive: true }),
    };
  },
  memory: () => {
    const fs = new MemoryFileSystem().seed({ "/etc/webhook/.keep": "" });
    const network = new MemoryHttpNetwork();
    return Promise.resolve({
      layer: Layer.merge(layerMemoryFs(fs), layerMemoryHttp(network)),
      dir: "/etc/webhook",
      write: (path, text) => Effect.runPromise(fs.service.writeAtomic(path, text)),
      client: (caPem) => ({
        call: async (port, path, init = {}) => {
          const r = await network.fetch(`https://localhost:${port}${path}`, { ...init, caCerts: [caPem] });
          return { status: r.status, text: await r.text() };
        },
        close: () => {},
      }),
      release: () => Promise.resolve(),
    });
  },
};

const serverTest = (
  title: string,
  body: (w: RunningWebhook, p: Platform, ca: PemPair) => Promise<void>,
) => {
  for (const [name, platform] of Object.entries(platforms)) {
    Deno.test(`server (${name} fs and http): ${title}`, async () => {
      const p = await platform();
      try {
        const { ca, leaf } = await pair("first-ca");
        await p.write(`${p.dir}/tls.crt`, leaf.certPem);
        await p.write(`${p.dir}/tls.key`, leaf.keyPem);
        await Effect.runPromise(
          Effect.scoped(Effect.gen(function* () {
            const w = yield* startWebhook({
              hostname: "127.0.0.1",
              port: 0,
              certFile: `${p.dir}/tls.crt`,
              keyFile: `${p.dir}/tls.key`,
              certReloadIntervalMs: 50,
              claimNamespace: "danm-system",
              claimGraceSeconds: 120,
              sweepIntervalMs: 3_600_000,
              namingScheme: "",
            });
            yield* Effect.promise(() => body(w, p, ca));
          })).pipe(Effect.provide(Layer.merge(layerMemoryKube(new MemoryApiServer()), p.layer))),
        );
      } finally {
        await p.release();
      }
    });
  }
};

serverTest("health, readiness, metrics and the two admission endpoints over TLS", async (w, p, ca) => {
  const client = p.client(ca.certPem);
  try {
    const port = w.server.port;
    assertEquals(await client.call(port, "/healthz"), { status: 200, text: "ok\n" });
    const deadline = Date.now() + 3000;
    while ((await client.call(port, "/readyz")).status !== 200) {
      assert(Date.now() < deadline, "ready within 3 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    const body = JSON.stringify(
      review("CREATE", { kind: "DanmNet", metadata: { name: "n", namespace: "default" }, spec: { NetworkID: "n" } }),
    );
    const mutated = await client.call(port, "/mutate", {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    });
    assertEquals(mutated.status, 200);
    const resp = JSON.parse(mutated.text).response;
    assertEquals(resp.allowed, true);
    assertEquals(JSON.parse(atob(resp.patch)), [{ op: "add", path: "/spec/NetworkType", value: "ipvlan" }]);
    const validated = await client.call(port, "/validate?timeout=10s", { method: "POST", body });
    assertEquals(JSON.parse(validated.text).response.allowed, true);
    assertEquals((await client.call(port, "/validate")).status, 405);
    assertEquals((await client.call(port, "/validate", { method: "POST", body: "{" })).status, 400);
    const notReview = await client.call(port, "/validate", { method: "POST", body: '{"kind":"Pod"}' });
    assertEquals(notReview.status, 400);
    assertMatch(notReview.text, /not an admission\.k8s\.io\/v1 AdmissionReview/);
    assertEquals((await client.call(port, "/nope")).status, 404);
    const metrics = await client.call(port, "/metrics");
    assertMatch(
      metrics.text,
      /danm_webhook_admission_requests_total\{endpoint="mutate",kind="DanmNet",operation="CREATE",result="allowed"\} 1/,
    );
    assertMatch(
      metrics.text,
      /danm_webhook_admission_duration_seconds_count\{endpoint="validate",kind="DanmNet",operation="CREATE",result="allowed"\} 1/,
    );
    assertMatch(metrics.text, /danm_webhook_http_duration_seconds_count\{path="\/mutate"\} 1/);
    assertMatch(metrics.text, /danm_webhook_certificate_reloads_total 1/);
    assertMatch(metrics.text, /danm_webhook_ready 1/);
  } finally {
    client.close();
  }
});

serverTest(
  "a changed certificate is picked up without a restart; a broken pair keeps the old one",
  async (w, p, ca) => {
    const next = await pair("second-ca");
    const oldClient = p.client(ca.certPem);
    const newClient = p.client(next.ca.certPem);
    try {
      const port = w.server.port;
      assertEquals((await oldClient.call(port, "/healthz")).status, 200);
      assertEquals(w.server.generation(), 1);
      // A key that does not load: the old listener stays.
      await p.write(`${p.dir}/tls.key`, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
      await new Promise((r) => setTimeout(r, 300));
      assertEquals(w.server.generation(), 1);
      assertEquals((await oldClient.call(port, "/healthz")).status, 200);
      await p.write(`${p.dir}/tls.key`, next.leaf.keyPem);
      await p.write(`${p.dir}/tls.crt`, next.leaf.certPem);
      const deadline = Date.now() + 5000;
      while (w.server.generation() < 2) {
        assert(Date.now() < deadline, "reloaded within 5 s");
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals((await newClient.call(port, "/healthz")).status, 200);
      assertMatch((await newClient.call(port, "/metrics")).text, /danm_webhook_certificate_reloads_total 2/);
      // New connections present the new certificate (the old client's pooled connection would not tell).
      const fresh = p.client(ca.certPem);
      try {
        await assertRejects(() => fresh.call(port, "/healthz"));
      } finally {
        fresh.close();
      }
    } finally {
      oldClient.close();
      newClient.close();
    }
  },
);
