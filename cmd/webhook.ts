// danm's admission webhook: flags → config, the live Kube, Fs and Http layers, core/webhook/main.ts until SIGTERM.
//
//   deno run -A cmd/webhook.ts --bootstrap-certs --namespace kube-system
//   deno run -A cmd/webhook.ts --tls-cert-file tls.crt --tls-key-file tls.key --kubeconfig ~/.kube/config
import "../adapters/runtime/effect_without_async_context.ts";
import { parseArgs } from "node:util";
import { Effect, Layer, Schema } from "effect";
import { layerLiveFs } from "../adapters/fs/live.ts";
import { logFlagFields, logFlagOptions, logFlagsUsage, loggingLayer } from "../adapters/cli/logging.ts";
import { layerLiveHttp } from "../adapters/http/live.ts";
import { layerLiveKube } from "../adapters/kube/live.ts";
import { startWebhook, type WebhookConfig } from "../core/webhook/main.ts";
import { WebhookConfigurationName } from "../core/webhook/manifests.ts";

const usage = `usage: webhook [flags]
  --tls-cert-file PATH        serving certificate (PEM), reloaded when it changes [/var/run/danm-webhook/tls/tls.crt]
  --tls-key-file PATH         its private key (PEM) [/var/run/danm-webhook/tls/tls.key]
  --bind-address ADDR         [0.0.0.0]
  --port N                    [8443]
  --kubeconfig PATH           empty: in-cluster service account [""]
  --namespace NS              the webhook's namespace: VNI claims and the certificate Secret [$POD_NAMESPACE or kube-system]
  --bootstrap-certs           issue the serving certificate (self-signed CA) into --secret-name if missing,
                              write it to the certificate files and set the webhook configurations' caBundle
  --secret-name NAME          [danm-webhook-tls]
  --service-name NAME         the Service the apiserver calls; names the certificate [danm-webhook]
  --webhook-config-name NAME  Validating/MutatingWebhookConfiguration to patch [${WebhookConfigurationName}]
  --tenant-config NAME        TenantConfig to use [the first by name, as DANM]
  --naming-scheme S           "" or legacy, as namingScheme in 00-danm.conf [""]
  --claim-grace SECONDS       age after which an unused VNI claim is reclaimed [120]
  --sweep-interval SECONDS    [30]
  --cert-reload-interval SECONDS [10]
${logFlagsUsage}`;

const IntFlag = (min: number, max: number) =>
  Schema.NumberFromString.check(Schema.isInt(), Schema.isBetween({ minimum: min, maximum: max }));

const Flags = Schema.Struct({
  "tls-cert-file": Schema.String,
  "tls-key-file": Schema.String,
  "bind-address": Schema.String,
  port: IntFlag(0, 65535),
  kubeconfig: Schema.String,
  namespace: Schema.String.check(Schema.isMinLength(1)),
  "bootstrap-certs": Schema.Boolean,
  "secret-name": Schema.String.check(Schema.isMinLength(1)),
  "service-name": Schema.String.check(Schema.isMinLength(1)),
  "webhook-config-name": Schema.String.check(Schema.isMinLength(1)),
  "tenant-config": Schema.String,
  "naming-scheme": Schema.Literals(["", "legacy"]),
  "claim-grace": IntFlag(10, 86400),
  "sweep-interval": IntFlag(1, 86400),
  "cert-reload-interval": IntFlag(1, 3600),
  help: Schema.Boolean,
  ...logFlagFields,
});

const str = (d: string) => ({ type: "string" as const, default: d });
const { values } = parseArgs({
  args: Deno.args,
  options: {
    "tls-cert-file": str("/var/run/danm-webhook/tls/tls.crt"),
    "tls-key-file": str("/var/run/danm-webhook/tls/tls.key"),
    "bind-address": str("0.0.0.0"),
    port: str("8443"),
    kubeconfig: str(""),
    namespace: str(Deno.env.get("POD_NAMESPACE") ?? "kube-system"),
    "bootstrap-certs": { type: "boolean", default: false },
    "secret-name": str("danm-webhook-tls"),
    "service-name": str("danm-webhook"),
    "webhook-config-name": str(WebhookConfigurationName),
    "tenant-config": str(""),
    "naming-scheme": str(""),
    "claim-grace": str("120"),
    "sweep-interval": str("30"),
    "cert-reload-interval": str("10"),
    help: { type: "boolean", default: false },
    ...logFlagOptions,
  },
  strict: true,
});

const flags = (() => {
  try {
    return Schema.decodeUnknownSync(Flags)(values);
  } catch (e) {
    console.error(`${e instanceof Error ? e.message : e}\n${usage}`);
    Deno.exit(2);
  }
})();
if (flags.help) {
  console.log(usage);
  Deno.exit(0);
}

const ns = flags.namespace, svc = flags["service-name"];
const config: WebhookConfig = {
  hostname: flags["bind-address"],
  port: flags.port,
  certFile: flags["tls-cert-file"],
  keyFile: flags["tls-key-file"],
  certReloadIntervalMs: flags["cert-reload-interval"] * 1000,
  claimNamespace: ns,
  claimGraceSeconds: flags["claim-grace"],
  sweepIntervalMs: flags["sweep-interval"] * 1000,
  namingScheme: flags["naming-scheme"],
  ...(flags["tenant-config"] ? { tenantConfigName: flags["tenant-config"] } : {}),
  ...(flags["bootstrap-certs"]
    ? {
      bootstrap: {
        namespace: ns,
        secretName: flags["secret-name"],
        webhookConfigurationName: flags["webhook-config-name"],
        dnsNames: [svc, `${svc}.${ns}`, `${svc}.${ns}.svc`, `${svc}.${ns}.svc.cluster.local`],
        ipAddresses: [],
        certFile: flags["tls-cert-file"],
        keyFile: flags["tls-key-file"],
        resyncMs: 5 * 60 * 1000,
      },
    }
    : {}),
};

const kube = layerLiveKube({
  config: flags.kubeconfig ? { _tag: "Kubeconfig", path: flags.kubeconfig } : { _tag: "InCluster" },
  userAgent: "danm-webhook",
});

const program = Effect.scoped(Effect.andThen(startWebhook(config), Effect.never)).pipe(
  Effect.provide(Layer.mergeAll(kube, layerLiveFs, layerLiveHttp)),
  Effect.provide(loggingLayer(flags["log-level"], flags["log-format"])),
);
const controller = new AbortController();
for (const signal of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(signal, () => controller.abort());
try {
  await Effect.runPromise(program, { signal: controller.signal });
} catch (e) {
  if (!controller.signal.aborted) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}
