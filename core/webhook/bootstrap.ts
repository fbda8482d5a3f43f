// Certificate bootstrap (--bootstrap-certs): the webhook provides its own TLS without the removed
// certificates.k8s.io/v1beta1 API (DANM's scripts), cert-manager or a download.
//
//   1. Read the Secret (kubernetes.io/tls, plus ca.crt and ca.key). Missing: create a self-signed CA (10 years)
//      and a serving certificate for the Service's DNS names (1 year), and create the Secret; if another replica
//      created it first (AlreadyExists), use theirs.
//   2. A serving certificate that expires within `renewBeforeDays`, or whose names differ from the wanted ones,
//      is re-issued from the same CA (compare-and-swap update of the Secret), so the caBundle stays valid.
//   3. Write tls.crt/tls.key to the certificate files when they differ (atomically: temp file + rename); the
//      server notices the change and reloads.
//   4. Set the CA as caBundle of every webhook in the Validating- and MutatingWebhookConfiguration, with a JSON
//      patch guarded by a `test` of each webhook's name.
// Run at start and then periodically by every replica: rotation by one replica reaches the others.
import { Clock, Effect, Schema } from "effect";
import { Fs } from "../ports/filesystem.ts";
import { Kube, type KubeError } from "../ports/kube.ts";
import { type JsonPatchOperation } from "../ports/kube.ts";
import {
  MutatingWebhookConfigurationResource,
  type Secret,
  SecretResource,
  ValidatingWebhookConfigurationResource,
} from "./kinds.ts";
import { CertificateError, createCa, issueServingCertificate, type PemPair } from "./x509.ts";

export interface BootstrapConfig {
  readonly namespace: string;
  readonly secretName: string;
  /** Name of both webhook configurations whose caBundle is set. */
  readonly webhookConfigurationName: string;
  readonly dnsNames: ReadonlyArray<string>;
  readonly ipAddresses: ReadonlyArray<string>;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caValidityDays?: number;
  readonly validityDays?: number;
  readonly renewBeforeDays?: number;
}

export class BootstrapError extends Schema.TaggedError<BootstrapError>()("BootstrapError", {
  step: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `certificate bootstrap: ${this.step}: ${this.detail}`;
  }
}

export const NotAfterAnnotation = "danm.io/serving-not-after";
export const NamesAnnotation = "danm.io/serving-names";

const b64 = (s: string) => btoa(s);
const unb64 = (s: string | undefined) => {
  try {
    return s === undefined ? undefined : atob(s);
  } catch {
    return undefined;
  }
};

const wantedNames = (c: BootstrapConfig) => [...c.dnsNames, ...c.ipAddresses].join(",");

export interface ServingMaterial extends PemPair {
  readonly caPem: string;
}

function material(secret: Secret): (ServingMaterial & { caKeyPem?: string }) | undefined {
  const d = secret.data ?? {};
  const certPem = unb64(d["tls.crt"]), keyPem = unb64(d["tls.key"]), caPem = unb64(d["ca.crt"]);
  const caKeyPem = unb64(d["ca.key"]);
  if (!certPem || !keyPem || !caPem) return undefined;
  return { certPem, keyPem, caPem, ...(caKeyPem ? { caKeyPem } : {}) };
}

const kubeStep = (step: string) => (e: KubeError) => new BootstrapError({ step, detail: e.message });
const certStep = (e: CertificateError) => new BootstrapError({ step: e.operation, detail: e.detail });

const secretFor = (
  c: BootstrapConfig,
  ca: PemPair,
  leaf: PemPair & { notAfter: Date },
  base?: Secret,
): Secret => ({
  metadata: {
    ...(base?.metadata ?? {}),
    name: c.secretName,
    namespace: c.namespace,
    labels: { ...base?.metadata.labels, "app.kubernetes.io/managed-by": "danm-webhook" },
    annotations: {
      ...base?.metadata.annotations,
      [NotAfterAnnotation]: leaf.notAfter.toISOString(),
      [NamesAnnotation]: wantedNames(c),
    },
  },
  type: "kubernetes.io/tls",
  data: {
    "tls.crt": b64(leaf.certPem),
    "tls.key": b64(leaf.keyPem),
    "ca.crt": b64(ca.certPem),
    "ca.key": b64(ca.keyPem),
  },
});

const issueFor = (c: BootstrapConfig, ca: PemPair, now: number) =>
  issueServingCertificate(ca, {
    commonName: c.dnsNames[0] ?? c.ipAddresses[0] ?? "danm-webhook",
    dnsNames: c.dnsNames,
    ipAddresses: c.ipAddresses,
    validityDays: c.validityDays ?? 365,
  }, new Date(now)).pipe(Effect.mapError(certStep));

/** Steps 1–2: the Secret's material, created or renewed as needed. */
export const ensureServingSecret = (c: BootstrapConfig): Effect.Effect<ServingMaterial, BootstrapError, Kube> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = yield* kube.get(SecretResource, c.secretName, { namespace: c.namespace }).pipe(
        Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
        Effect.mapError(kubeStep(`reading Secret ${c.namespace}/${c.secretName}`)),
      );
      const now = yield* Clock.currentTimeMillis;
      const newCa = createCa(`danm-webhook-ca@${Math.floor(now / 1000)}`, c.caValidityDays ?? 3650, new Date(now))
        .pipe(Effect.mapError(certStep));
      if (existing === undefined) {
        const ca = yield* newCa;
        const leaf = yield* issueFor(c, ca, now);
        const created = yield* kube.create(SecretResource, secretFor(c, ca, leaf)).pipe(
          Effect.map(() => true),
          Effect.catchTag("KubeAlreadyExists", () => Effect.succeed(false)), // another replica won: use theirs
          Effect.mapError(kubeStep(`creating Secret ${c.namespace}/${c.secretName}`)),
        );
        if (created) return { certPem: leaf.certPem, keyPem: leaf.keyPem, caPem: ca.certPem };
        continue;
      }
      const m = material(existing);
      const notAfter = Date.parse(existing.metadata.annotations?.[NotAfterAnnotation] ?? "");
      const renewBy = now + (c.renewBeforeDays ?? 30) * 24 * 3600 * 1000;
      const namesOk = existing.metadata.annotations?.[NamesAnnotation] === wantedNames(c);
      if (m && namesOk && !Number.isNaN(notAfter) && notAfter > renewBy) return m;
      // Renew from the stored CA; without a usable CA start over with a new one.
      const ca: PemPair = m?.caKeyPem ? { certPem: m.caPem, keyPem: m.caKeyPem } : yield* newCa;
      const leaf = yield* issueFor(c, ca, now);
      const updated = yield* kube.update(SecretResource, secretFor(c, ca, leaf, existing)).pipe(
        Effect.map(() => true),
        Effect.catchTags({ KubeConflict: () => Effect.succeed(false), KubeNotFound: () => Effect.succeed(false) }),
        Effect.mapError(kubeStep(`renewing Secret ${c.namespace}/${c.secretName}`)),
      );
      if (updated) return { certPem: leaf.certPem, keyPem: leaf.keyPem, caPem: ca.certPem };
    }
    return yield* new BootstrapError({
      step: `Secret ${c.namespace}/${c.secretName}`,
      detail: "kept changing under us (5 attempts)",
    });
  });

const writeIfChanged = (path: string, content: string, mode: number) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    // Unreadable counts as different: the write then tells what is wrong.
    const current = yield* fs.readText(path).pipe(Effect.orElseSucceed(() => undefined));
    if (current === content) return false;
    yield* fs.mkdir(path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".");
    yield* fs.writeAtomic(path, content, { mode });
    return true;
  }).pipe(Effect.mapError((e) => new BootstrapError({ step: `writing ${path}`, detail: e.message })));

/** Step 3. The key first: a reload triggered by the new certificate must find its key already in place. */
export const writeServingFiles = (c: BootstrapConfig, m: ServingMaterial) =>
  Effect.gen(function* () {
    const key = yield* writeIfChanged(c.keyFile, m.keyPem, 0o600);
    const cert = yield* writeIfChanged(c.certFile, m.certPem, 0o644);
    return key || cert;
  });

/** Step 4: caBundle of every webhook of both configurations; returns how many webhooks were patched. */
export const patchCaBundles = (c: BootstrapConfig, caPem: string): Effect.Effect<number, BootstrapError, Kube> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const bundle = b64(caPem);
    let patched = 0;
    for (const rt of [ValidatingWebhookConfigurationResource, MutatingWebhookConfigurationResource]) {
      const config = yield* kube.get(rt, c.webhookConfigurationName).pipe(
        Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
        Effect.mapError(kubeStep(`reading ${rt.kind} ${c.webhookConfigurationName}`)),
      );
      if (config === undefined) {
        yield* Effect.logWarning(`${rt.kind} ${c.webhookConfigurationName} does not exist (yet): caBundle not set`);
        continue;
      }
      const ops: JsonPatchOperation[] = [];
      (config.webhooks ?? []).forEach((w, i) => {
        if (w.clientConfig.caBundle === bundle) return;
        ops.push({ op: "test", path: `/webhooks/${i}/name`, value: w.name });
        ops.push({ op: "add", path: `/webhooks/${i}/clientConfig/caBundle`, value: bundle });
      });
      if (ops.length === 0) continue;
      yield* kube.patch(rt, c.webhookConfigurationName, { type: "json", ops }).pipe(
        Effect.mapError(kubeStep(`patching the caBundle of ${rt.kind} ${c.webhookConfigurationName}`)),
      );
      patched += ops.length / 2;
    }
    return patched;
  });

/** Steps 1–4. */
export const bootstrapCertificates = (c: BootstrapConfig) =>
  Effect.gen(function* () {
    const m = yield* ensureServingSecret(c);
    const changed = yield* writeServingFiles(c, m);
    const patched = yield* patchCaBundles(c, m.caPem);
    return { changed, patched, caPem: m.caPem };
  });
