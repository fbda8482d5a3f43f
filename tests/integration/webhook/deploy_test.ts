// k8s/webhook on the real apiserver: every manifest passes server-side validation, and the webhook runs with
// exactly the RBAC of rbac.yaml, bootstrapping its own CA and serving certificate (--bootstrap-certs) and setting
// the caBundle the apiserver then trusts.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Effect, Exit, Layer, Scope } from "effect";
import { layerLiveFs } from "../../../adapters/fs/live.ts";
import { layerLiveHttp } from "../../../adapters/http/live.ts";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { startWebhook } from "../../../core/webhook/main.ts";
import { webhookConfigurations } from "../../../core/webhook/manifests.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { freePort, repoRoot } from "../../harness/proc.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { pick, type Rest, restClient } from "../api/rest.ts";
import { type Json, messageOf, TestLabel } from "./support.ts";

const manifests = (file: string) =>
  (yaml.loadAll(Deno.readTextFileSync(`${repoRoot}/k8s/webhook/${file}`)) as Json[]).filter((d) => d !== null);

const pathOf = (o: Json): string => {
  const kind = String(o.kind), ns = pick(o, "metadata", "namespace") as string | undefined;
  const plural: Record<string, [string, string]> = {
    ServiceAccount: ["/api/v1", "serviceaccounts"],
    Service: ["/api/v1", "services"],
    Deployment: ["/apis/apps/v1", "deployments"],
    PodDisruptionBudget: ["/apis/policy/v1", "poddisruptionbudgets"],
    ClusterRole: ["/apis/rbac.authorization.k8s.io/v1", "clusterroles"],
    ClusterRoleBinding: ["/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"],
    Role: ["/apis/rbac.authorization.k8s.io/v1", "roles"],
    RoleBinding: ["/apis/rbac.authorization.k8s.io/v1", "rolebindings"],
    MutatingWebhookConfiguration: ["/apis/admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"],
    ValidatingWebhookConfiguration: ["/apis/admissionregistration.k8s.io/v1", "validatingwebhookconfigurations"],
  };
  const [base, res] = plural[kind] ?? fail(`no path for ${kind}`);
  return ns ? `${base}/namespaces/${ns}/${res}` : `${base}/${res}`;
};

Deno.test("deploy: every manifest of k8s/webhook passes the apiserver's validation (server-side dry-run, strict)", async () => {
  const cluster = await useCluster();
  const rest = restClient(cluster.kubeConfig);
  try {
    for (const file of ["rbac.yaml", "service.yaml", "deployment.yaml", "webhooks.yaml"]) {
      for (const o of manifests(file)) {
        const r = await rest.call("POST", `${pathOf(o)}?dryRun=All&fieldValidation=Strict`, o);
        // Already there from another run of this file would be 409; anything else is a manifest error.
        assert(r.status === 201 || r.status === 409, `${file} ${o.kind}: ${r.status} ${messageOf(r)}`);
      }
    }
  } finally {
    rest.close();
    await cluster.release();
  }
});

async function serviceAccountToken(rest: Rest): Promise<string> {
  const r = await rest.call("POST", "/api/v1/namespaces/kube-system/serviceaccounts/danm-webhook/token", {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { expirationSeconds: 3600 },
  });
  return String(pick(r.body, "status", "token") ?? fail(`no token: ${messageOf(r)}`));
}

Deno.test({
  name:
    "deploy: with only rbac.yaml's permissions the webhook bootstraps its certificate, sets the caBundle and serves",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await useCluster();
    await installDanmCrds(cluster.kubeConfig);
    const rest = restClient(cluster.kubeConfig);
    const label = uniqueName("deploy");
    const dir = await Deno.makeTempDir({ prefix: "danm-webhook-deploy-" });
    const cleanup: string[] = [];
    const scope = Scope.makeUnsafe();
    try {
      for (const o of manifests("rbac.yaml")) {
        const r = await rest.call("POST", pathOf(o), o);
        assertEquals(r.status, 201, `${o.kind}: ${messageOf(r)}`);
        cleanup.push(`${pathOf(o)}/${pick(o, "metadata", "name")}`);
      }
      // Registered by URL (there is no Service in this cluster) and without a caBundle: the bootstrap sets it.
      const hooks = webhookConfigurations({
        client: { url: "https://127.0.0.1:1" },
        objectSelector: { matchLabels: { [TestLabel]: label } },
      });
      const tokenFile = `${dir}/token`;
      await Deno.writeTextFile(tokenFile, await serviceAccountToken(rest));
      const layer = layerLiveKube({
        config: {
          _tag: "InCluster",
          host: "127.0.0.1",
          port: new URL(cluster.url).port,
          tokenFile,
          caFile: cluster.pki.ca.certFile,
        },
      });
      const context = await Effect.runPromise(
        Layer.buildWithScope(Layer.mergeAll(layer, layerLiveFs, layerLiveHttp), scope),
      );
      const tcName = uniqueName("tc");
      const config = {
        hostname: "127.0.0.1",
        port: 0,
        certFile: `${dir}/tls/tls.crt`,
        keyFile: `${dir}/tls/tls.key`,
        certReloadIntervalMs: 200,
        claimNamespace: "kube-system",
        claimGraceSeconds: 120,
        sweepIntervalMs: 3_600_000,
        namingScheme: "" as const,
        tenantConfigName: tcName,
        bootstrap: {
          namespace: "kube-system",
          secretName: "danm-webhook-tls",
          webhookConfigurationName: "danm-webhook",
          dnsNames: ["localhost"],
          ipAddresses: ["127.0.0.1"],
          certFile: `${dir}/tls/tls.crt`,
          keyFile: `${dir}/tls/tls.key`,
          resyncMs: 3_600_000,
        },
      };
      // The port is known only once the server runs: register first with a placeholder, then point it at us.
      for (
        const [kind, obj] of [["MutatingWebhookConfiguration", hooks.mutating], [
          "ValidatingWebhookConfiguration",
          hooks.validating,
        ]] as const
      ) {
        const r = await rest.call("POST", pathOf({ ...obj, kind }), obj);
        assertEquals(r.status, 201, messageOf(r));
        cleanup.unshift(`${pathOf({ ...obj, kind })}/danm-webhook`);
      }
      const running = await Effect.runPromise(
        startWebhook(config).pipe(Scope.provide(scope), Effect.provideContext(context)),
      );
      await Effect.runPromise(running.view.awaitReady);
      cleanup.push("/api/v1/namespaces/kube-system/secrets/danm-webhook-tls");

      const secret = await rest.call("GET", "/api/v1/namespaces/kube-system/secrets/danm-webhook-tls");
      assertEquals(pick(secret.body, "type"), "kubernetes.io/tls");
      const ca = atob(String(pick(secret.body, "data", "ca.crt")));
      assertMatch(ca, /BEGIN CERTIFICATE/);
      assertEquals(await Deno.readTextFile(`${dir}/tls/tls.crt`), atob(String(pick(secret.body, "data", "tls.crt"))));
      for (const kind of ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]) {
        const cfg = await rest.call("GET", `${pathOf({ kind })}/danm-webhook`);
        for (const hook of pick(cfg.body, "webhooks") as Json[]) {
          assertEquals(pick(hook, "clientConfig", "caBundle"), btoa(ca), `${kind} ${hook.name}: caBundle set`);
        }
      }
      // Point the registrations at the running server (only the URL changes; the caBundle stays).
      const port = running.server.port;
      for (const kind of ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]) {
        const cfg = await rest.call("GET", `${pathOf({ kind })}/danm-webhook`);
        const webhooks = (pick(cfg.body, "webhooks") as Json[]).map((h) => ({
          ...h,
          clientConfig: {
            ...(h.clientConfig as Json),
            url: String(pick(h, "clientConfig", "url")).replace("https://127.0.0.1:1", `https://127.0.0.1:${port}`),
          },
        }));
        const r = await rest.call("PUT", `${pathOf({ kind })}/danm-webhook`, { ...(cfg.body as Json), webhooks });
        assertEquals(r.status, 200, messageOf(r));
      }

      // TLS 1.2 and 1.3 only: a real TLS 1.0 / 1.1 client handshake (OpenSSL, its own floor lowered so it does send
      // the old ClientHello) is refused by the server with an alert.
      for (
        const [flag, accepted] of [["-tls1", false], ["-tls1_1", false], ["-tls1_2", true], ["-tls1_3", true]] as const
      ) {
        const h = await opensslHandshake(port, flag, `${dir}/tls/ca.crt`, ca);
        if (accepted) {
          assertMatch(h.output, new RegExp(`New, TLSv1\\.${flag.slice(-1)}, Cipher is [A-Z]`), `${flag}: ${h.output}`);
        } else {
          assert(!h.ok, `${flag} handshake succeeded: ${h.output}`);
          // The ClientHello went out and the server answered it with an alert (rustls: handshake_failure; some
          // servers say protocol_version) — a refusal by the server, not the client declining to try.
          assertMatch(h.output, /written [1-9]\d* bytes/, `${flag}: the client sent its hello`);
          assertMatch(h.output, /alert (handshake failure|protocol version).*SSL alert number (40|70)/, `${flag}`);
          assertMatch(h.output, /Cipher is \(NONE\)/);
        }
      }

      // A second replica starting now finds the Secret and keeps its CA.
      const again = await Effect.runPromise(
        Effect.scoped(
          startWebhook({
            ...config,
            port: 0,
            certFile: `${dir}/b.crt`,
            keyFile: `${dir}/b.key`,
            bootstrap: { ...config.bootstrap, certFile: `${dir}/b.crt`, keyFile: `${dir}/b.key` },
          }).pipe(
            Effect.map(() => "started"),
          ),
        ).pipe(Effect.provideContext(context)),
      );
      assertEquals(again, "started");
      assertEquals(await Deno.readTextFile(`${dir}/b.crt`), await Deno.readTextFile(`${dir}/tls/tls.crt`));

      // Now through the apiserver, over TLS trusted via the bootstrapped CA, with the service account's rights:
      // a TenantConfig, a TenantNetwork (VNI claim Lease in kube-system), its deletion (claim marked, released).
      const labelled = (o: Json) => ({ ...o, metadata: { ...(o.metadata as Json), labels: { [TestLabel]: label } } });
      const tc = await rest.call(
        "POST",
        "/apis/danm.io/v1/tenantconfigs",
        labelled({
          apiVersion: "danm.io/v1",
          kind: "TenantConfig",
          metadata: { name: tcName },
          hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "3000-3010" }],
        }),
      );
      assertEquals(tc.status, 201, messageOf(tc));
      cleanup.unshift(`/apis/danm.io/v1/tenantconfigs/${tcName}`);
      const deadline = Date.now() + 20_000;
      const tnName = uniqueName("tn");
      let created;
      while (true) {
        created = await rest.call(
          "POST",
          "/apis/danm.io/v1/namespaces/default/tenantnetworks",
          labelled({
            apiVersion: "danm.io/v1",
            kind: "TenantNetwork",
            metadata: { name: tnName, namespace: "default" },
            spec: { NetworkID: "tn" },
          }),
        );
        if (created.status === 201 && pick(created.body, "spec", "Options", "vlan") !== undefined) break;
        if (created.status === 201) {
          await rest.call("DELETE", `/apis/danm.io/v1/namespaces/default/tenantnetworks/${tnName}`);
        }
        if (Date.now() > deadline) fail(`the webhook did not admit the TenantNetwork: ${messageOf(created)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assertEquals([
        pick(created.body, "spec", "Options", "host_device"),
        pick(created.body, "spec", "Options", "vlan"),
      ], ["ens4", 3000]);
      const leases = await rest.call(
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=danm.io%2Fvni",
      );
      assertEquals((pick(leases.body, "items") as Json[]).length, 1);
      const del = await rest.call("DELETE", `/apis/danm.io/v1/namespaces/default/tenantnetworks/${tnName}`);
      assertEquals(del.status, 200, messageOf(del));
      const until = Date.now() + 10_000;
      while (
        ((pick(
          (await rest.call(
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=danm.io%2Fvni",
          )).body,
          "items",
        ) as Json[]).length) > 0
      ) {
        if (Date.now() > until) fail("the claim was not released after the delete");
        await new Promise((r) => setTimeout(r, 50));
      }
      // A pod naming a missing network is refused: the NAD lookup is allowed too.
      const pod = await rest.call(
        "POST",
        "/api/v1/namespaces/default/pods",
        labelled({
          apiVersion: "v1",
          kind: "Pod",
          metadata: {
            name: uniqueName("pod"),
            namespace: "default",
            annotations: { "k8s.v1.cni.cncf.io/networks": "nowhere" },
          },
          spec: { containers: [{ name: "c", image: "busybox" }] },
        }),
      );
      assertEquals(pod.status, 403, messageOf(pod));
      assertMatch(messageOf(pod), /no NetworkAttachmentDefinition default\/nowhere/);
    } finally {
      for (const path of cleanup) await rest.call("DELETE", path);
      await Effect.runPromise(Scope.close(scope, Exit.void));
      await Deno.remove(dir, { recursive: true });
      rest.close();
      await cluster.release();
    }
  },
});

Deno.test("deploy: cmd/webhook.ts runs as a process: bootstraps its certificate, becomes ready, stops on SIGTERM", async () => {
  const cluster = await useCluster();
  await installDanmCrds(cluster.kubeConfig);
  const rest = restClient(cluster.kubeConfig);
  const dir = await Deno.makeTempDir({ prefix: "danm-webhook-cmd-" });
  const secret = uniqueName("webhook-tls");
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${repoRoot}/cmd/webhook.ts`,
      `--kubeconfig=${cluster.kubeconfigPath}`,
      `--port=${port}`,
      "--bind-address=127.0.0.1",
      `--tls-cert-file=${dir}/tls.crt`,
      `--tls-key-file=${dir}/tls.key`,
      "--bootstrap-certs",
      "--namespace=default",
      `--secret-name=${secret}`,
      "--service-name=localhost",
      `--webhook-config-name=${uniqueName("absent")}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  try {
    const deadline = Date.now() + 30_000;
    let ready = false;
    while (!ready) {
      if (Date.now() > deadline) fail(`not ready within 30 s: ${(await output.catch(() => ["", ""])).join("\n")}`);
      await new Promise((r) => setTimeout(r, 200));
      const s = await rest.call("GET", `/api/v1/namespaces/default/secrets/${secret}`);
      if (s.status !== 200) continue;
      const client = Deno.createHttpClient({ caCerts: [atob(String(pick(s.body, "data", "ca.crt")))] });
      try {
        const r = await fetch(`https://localhost:${port}/readyz`, { client });
        ready = r.status === 200 && (await r.text()) === "ok\n";
        if (ready) {
          const metrics = await (await fetch(`https://localhost:${port}/metrics`, { client })).text();
          assertMatch(metrics, /danm_webhook_ready 1/);
        }
      } catch {
        // not listening yet
      } finally {
        client.close();
      }
    }
    child.kill("SIGTERM");
    const status = await child.status;
    assertEquals(status.code, 0, (await output).join("\n"));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await rest.call("DELETE", `/api/v1/namespaces/default/secrets/${secret}`);
    await Deno.remove(dir, { recursive: true });
    rest.close();
    await cluster.release();
  }
});

/** One `openssl s_client` handshake with the webhook, pinned to one protocol version; what it printed. */
async function opensslHandshake(port: number, flag: string, caFile: string, ca: string) {
  await Deno.writeTextFile(caFile, ca);
  const out = await new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      "localhost",
      "-CAfile",
      caFile,
      flag,
      // OpenSSL 3 refuses TLS 1.0/1.1 itself at its default security level; level 0 makes it try.
      ...(flag === "-tls1_3" ? [] : ["-cipher", "DEFAULT:@SECLEVEL=0"]),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { ok: out.success, output: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr) };
}
