// Runs danm's webhook in the test process against the tier's real apiserver and registers it over TLS by URL,
// confined to objects carrying this file's test label (the tier shares one apiserver).
import { Effect, Exit, Layer, Scope } from "effect";
import { layerLiveFs } from "../../../adapters/fs/live.ts";
import { layerLiveHttp } from "../../../adapters/http/live.ts";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import type { Kube } from "../../../core/ports/kube.ts";
import { type RunningWebhook, startWebhook, type WebhookConfig } from "../../../core/webhook/main.ts";
import { webhookConfigurations } from "../../../core/webhook/manifests.ts";
import { fail } from "../../harness/assert.ts";
import { type TestCluster, uniqueName, useCluster } from "../../harness/cluster.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { pick, type Rest, restClient, type RestResponse } from "../api/rest.ts";

export type Json = Record<string, unknown>;

export const TestLabel = "danm.io/webhook-test";

export interface TestWebhook {
  readonly cluster: TestCluster;
  readonly rest: Rest;
  readonly running: RunningWebhook;
  /** The label value every object of this file carries (the hooks see nothing else). */
  readonly label: string;
  readonly claimNamespace: string;
  /** Runs an Effect needing Kube with the webhook's own live layer. */
  readonly run: <A, E>(e: Effect.Effect<A, E, Kube>) => Promise<A>;
  /** Adds the label (and the namespace for namespaced kinds) and POSTs; records it for cleanup when created. */
  readonly create: (kind: Kind, body: Json, query?: string) => Promise<RestResponse>;
  readonly mustCreate: (kind: Kind, body: Json) => Promise<Json>;
  readonly get: (kind: Kind, name: string) => Promise<Json>;
  readonly remove: (kind: Kind, name: string, query?: string) => Promise<RestResponse>;
  readonly close: () => Promise<void>;
}

export type Kind =
  | "DanmNet"
  | "TenantNetwork"
  | "ClusterNetwork"
  | "TenantConfig"
  | "DanmEp"
  | "ReservedIP"
  | "Pod"
  | "Lease"
  | "MultiNetworkPolicy";

const paths: Record<Kind, (ns: string) => string> = {
  DanmNet: (ns) => `/apis/danm.io/v1/namespaces/${ns}/danmnets`,
  TenantNetwork: (ns) => `/apis/danm.io/v1/namespaces/${ns}/tenantnetworks`,
  ClusterNetwork: () => `/apis/danm.io/v1/clusternetworks`,
  TenantConfig: () => `/apis/danm.io/v1/tenantconfigs`,
  DanmEp: (ns) => `/apis/danm.io/v1/namespaces/${ns}/danmeps`,
  ReservedIP: (ns) => `/apis/danm.io/v1/namespaces/${ns}/reservedips`,
  Pod: (ns) => `/api/v1/namespaces/${ns}/pods`,
  Lease: (ns) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
  MultiNetworkPolicy: (ns) => `/apis/k8s.cni.cncf.io/v1beta1/namespaces/${ns}/multi-networkpolicies`,
};
const apiVersions: Partial<Record<Kind, string>> = {
  Pod: "v1",
  Lease: "coordination.k8s.io/v1",
  MultiNetworkPolicy: "k8s.cni.cncf.io/v1beta1",
};
const namespaced = (k: Kind) => k !== "ClusterNetwork" && k !== "TenantConfig";

export const collection = (kind: Kind, ns = "default") => paths[kind](ns);

/** The message of a refusal (the apiserver prefixes the webhook's with `admission webhook "…" denied the request: `). */
export const messageOf = (r: RestResponse) => String(pick(r.body, "message") ?? JSON.stringify(r.body));

export interface StartOptions {
  readonly tenantConfigName?: string;
  readonly claimGraceSeconds?: number;
  readonly namingScheme?: "" | "legacy";
  readonly keepSamples?: number;
}

/** Starts the webhook, registers it and waits until the apiserver calls it. */
export async function startTestWebhook(o: StartOptions = {}): Promise<TestWebhook> {
  const cluster = await useCluster();
  await installDanmCrds(cluster.kubeConfig);
  const rest = restClient(cluster.kubeConfig);
  const label = uniqueName("t");
  const serving = await cluster.pki.server("danm-webhook", { dns: ["localhost"], ips: ["127.0.0.1"] });
  // Claims live in a namespace of their own, so that webhooks of other test files never see them.
  const claimNamespace = uniqueName("danm-claims");
  const ns = await rest.call("POST", "/api/v1/namespaces", { metadata: { name: claimNamespace } });
  if (ns.status !== 201) fail(`creating namespace ${claimNamespace}: ${JSON.stringify(ns.body)}`);
  const config: WebhookConfig = {
    hostname: "127.0.0.1",
    port: 0,
    certFile: serving.certFile,
    keyFile: serving.keyFile,
    certReloadIntervalMs: 1000,
    claimNamespace,
    claimGraceSeconds: o.claimGraceSeconds ?? 120,
    sweepIntervalMs: 3_600_000,
    namingScheme: o.namingScheme ?? "",
    ...(o.tenantConfigName ? { tenantConfigName: o.tenantConfigName } : {}),
    ...(o.keepSamples ? { keepSamples: o.keepSamples } : {}),
  };
  const scope = Scope.makeUnsafe();
  const layer = Layer.mergeAll(
    layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }),
    layerLiveFs,
    layerLiveHttp,
  );
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope));
  const run = <A, E>(e: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provideContext(e, context));
  const running = await Effect.runPromise(
    startWebhook(config).pipe(Scope.provide(scope), Effect.provideContext(context)),
  );
  await Effect.runPromise(running.view.awaitReady);

  const created: string[] = [];
  const hooks = webhookConfigurations({
    name: uniqueName("danm-webhook-test"),
    client: { url: `https://127.0.0.1:${running.server.port}` },
    caBundle: btoa(cluster.pki.ca.certPem),
    objectSelector: { matchLabels: { [TestLabel]: label } },
    excludedPodNamespaces: [],
  });
  const mutatingPath = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
  const validatingPath = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
  for (const [path, obj] of [[mutatingPath, hooks.mutating], [validatingPath, hooks.validating]] as const) {
    const r = await rest.call("POST", path, obj);
    if (r.status !== 201) fail(`registering the webhook: ${JSON.stringify(r.body)}`);
    created.push(`${path}/${(obj.metadata as Json).name}`);
  }

  const withMeta = (kind: Kind, body: Json): Json => {
    const meta = (body.metadata ?? {}) as Json;
    return {
      apiVersion: apiVersions[kind] ?? "danm.io/v1",
      kind,
      ...body,
      metadata: {
        ...meta,
        ...(namespaced(kind) ? { namespace: meta.namespace ?? "default" } : {}),
        labels: { ...(meta.labels as Json | undefined), [TestLabel]: label },
      },
    };
  };
  const create: TestWebhook["create"] = async (kind, body, query = "") => {
    const obj = withMeta(kind, body);
    const meta = obj.metadata as Json;
    const r = await rest.call("POST", `${collection(kind, String(meta.namespace ?? "default"))}${query}`, obj);
    if (r.status === 201 && !query.includes("dryRun")) {
      created.push(`${collection(kind, String(meta.namespace ?? "default"))}/${pick(r.body, "metadata", "name")}`);
    }
    return r;
  };
  const mustCreate: TestWebhook["mustCreate"] = async (kind, body) => {
    const r = await create(kind, body);
    if (r.status !== 201) fail(`creating ${kind} ${pick(body, "metadata", "name")}: ${messageOf(r)}`);
    return r.body as Json;
  };
  const get: TestWebhook["get"] = async (kind, name) => {
    const ns = name.includes("/") ? name.split("/")[0] : "default";
    const r = await rest.call("GET", `${collection(kind, ns)}/${name.split("/").pop()}`);
    if (r.status !== 200) fail(`reading ${kind} ${name}: ${messageOf(r)}`);
    return r.body as Json;
  };
  const remove: TestWebhook["remove"] = (kind, name, query = "") => {
    const ns = name.includes("/") ? name.split("/")[0] : "default";
    return rest.call("DELETE", `${collection(kind, ns)}/${name.split("/").pop()}${query}`);
  };

  // The apiserver picks new configurations up from its informer: wait until our hook answers.
  const deadline = Date.now() + 20_000;
  while (true) {
    const probe = await create(
      "DanmNet",
      {
        metadata: { name: uniqueName("probe") },
        spec: { NetworkID: "p", Options: { host_device: "x", vlan: 1, vxlan: 2 } },
      },
      "?dryRun=All",
    );
    if (probe.status === 403 && /vlan and vxlan are mutually exclusive/.test(messageOf(probe))) break;
    if (Date.now() > deadline) fail(`the webhook was not called within 20 s: ${messageOf(probe)}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const close = async () => {
    // Unregister first: deleting the test objects must not depend on the webhook.
    for (const path of [...created].reverse().filter((p) => p.includes("webhookconfigurations"))) {
      await rest.call("DELETE", path);
    }
    for (const path of [...created].reverse().filter((p) => !p.includes("webhookconfigurations"))) {
      await rest.call("DELETE", path);
    }
    await Effect.runPromise(Scope.close(scope, Exit.void));
    // Claims left behind (refused requests within the grace period), then their namespace.
    await rest.call("DELETE", `${collection("Lease", claimNamespace)}`);
    await rest.call("DELETE", `/api/v1/namespaces/${claimNamespace}`);
    rest.close();
    await cluster.release();
  };
  return { cluster, rest, running, label, claimNamespace, run, create, mustCreate, get, remove, close };
}
