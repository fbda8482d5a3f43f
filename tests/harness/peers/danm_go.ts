// Nokia's DANM v4.3.0 (the Go original danm replaces) installed on a test apiserver as its manifests install it:
//
//   - its CRDs (integration/crds: ClusterNetwork, TenantNetwork, TenantConfig, DanmEp, DanmNet) in group
//     danm.k8s.io — shipped as apiextensions v1beta1, which Kubernetes no longer serves, so converted to v1 here
//     without changing what they accept (structural form of the same schemas, nothing pruned as v1beta1 did not
//     prune), with the `api-approved.kubernetes.io` annotation a *.k8s.io group needs;
//   - its RBAC (cni_config/danm_rbac.yaml, the webhook's, netwatcher's and svcwatcher's) and ServiceAccounts;
//   - its admission webhook, which DANM's IPAM needs: it initialises a network's allocation bitmask and pool on
//     CREATE (without it DANM refuses to allocate: "IP address cannot be allocated for an L2 network"). It runs as
//     its Deployment runs it (in-cluster identity `kube-system/danm-webhook`), registered by URL;
//   - a CNI bin directory (DANM's `danm` and `fakeipam`, the reference plugins as delegates) and `00-danm.conf`
//     from its cni_config, whose kubeconfig authenticates as ServiceAccount `kube-system/danm`.
//
// DANM's `danm` binary appends to /var/log/danm.log: the installer mounts a tmpfs there, which it does only in a
// private mount namespace (the benches and the test tiers run in one), never on the machine's own /var/log.
//
// Used by the benches (bench:ipam, bench:cni, bench:scale), the peers test tier and the compatibility tests
// (DANM → danm upgrade).
import { freePort, run, sleep } from "../proc.ts";
import { ensureDanmGo, type PeerBuild } from "./build.ts";
import {
  adminRest,
  applyManifests,
  type Manifest,
  peerBinDir,
  type PeerCluster,
  type PeerProcess,
  readManifests,
  runInCluster,
  serviceAccountToken,
  tokenKubeconfig,
} from "./install.ts";
import { pick, type Rest } from "../../integration/api/rest.ts";
import { privateMountsEnv } from "../isolate.ts";

export const danmGoGroup = "danm.k8s.io";
/** DANM's pod annotation in v4.3.0. */
export const danmGoInterfacesAnnotation = "danm.k8s.io/interfaces";

export interface DanmGo {
  readonly build: PeerBuild;
  /** CNI_PATH for a runtime: DANM's `danm` and `fakeipam` plus the reference plugins. */
  readonly binDir: string;
  /** DANM's cniDir: `<NetworkID>.conf` files of static delegates go here. */
  readonly cniDir: string;
  /** 00-danm.conf as the runtime loads it (DANM speaks CNI 0.3.1 only). */
  readonly netconf: Readonly<Record<string, unknown>>;
  /** The CNI's kubeconfig (ServiceAccount kube-system/danm). */
  readonly kubeconfigPath: string;
  readonly webhook: PeerProcess;
  /** Writes the static delegate configuration DANM reads for networks with this NetworkID. */
  writeStaticConf(networkId: string, conf: Readonly<Record<string, unknown>>): Promise<void>;
  /** The last lines of DANM's CNI log and the webhook's. */
  logs(lines?: number): Promise<string>;
  /** Unregisters and stops the webhook, removes the directory. CRDs, RBAC and objects stay. */
  stop(): Promise<void>;
}

type Schema = Record<string, unknown>;
const isSchema = (v: unknown): v is Schema => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The structural (apiextensions v1) form of a v1beta1 validation schema that accepts the same objects: `type` of
 * object/array nodes made explicit, a type shared by every branch of a oneOf/anyOf hoisted out of it (v1 forbids it
 * inside), unknown fields preserved on every object (v1beta1 CRDs did not prune).
 */
export function structuralSchema(s: Schema): Schema {
  const out: Schema = { ...s };
  if (isSchema(out.properties)) {
    out.type ??= "object";
    out.properties = Object.fromEntries(
      Object.entries(out.properties).map(([k, v]) => [k, isSchema(v) ? structuralSchema(v) : v]),
    );
  }
  if (isSchema(out.items)) {
    out.type ??= "array";
    out.items = structuralSchema(out.items);
  }
  for (const junctor of ["oneOf", "anyOf", "allOf"]) {
    const branches = out[junctor];
    if (!Array.isArray(branches)) continue;
    const types = new Set(branches.map((b) => isSchema(b) ? b.type : undefined));
    if (types.size !== 1 || [...types][0] === undefined) {
      throw new Error(`cannot make ${junctor} with branch types ${[...types].join(",")} structural`);
    }
    out.type ??= [...types][0];
    out[junctor] = branches.map((b) => {
      const { type: _type, ...rest } = b as Schema;
      return rest;
    });
  }
  if (out.type === "object") out["x-kubernetes-preserve-unknown-fields"] = true;
  return out;
}

/** DANM's v1beta1 CRD as apiextensions v1, annotated for its protected *.k8s.io group. */
export function danmCrdV1(crd: Manifest): Manifest {
  const spec = crd.spec as Schema;
  const validation = isSchema(spec.validation) ? spec.validation.openAPIV3Schema : undefined;
  const schema = structuralSchema({ type: "object", ...(isSchema(validation) ? validation : {}) });
  const { version: _version, validation: _validation, ...rest } = spec;
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: crd.metadata.name,
      annotations: { "api-approved.kubernetes.io": "unapproved, DANM v4.3.0's own group" },
    },
    spec: {
      ...rest,
      versions: [{ name: String(spec.version), served: true, storage: true, schema: { openAPIV3Schema: schema } }],
    },
  };
}

/** Creates DANM ClusterNetwork `name` (its webhook fills in the allocation state); throws unless created. */
export async function createDanmGoClusterNetwork(
  rest: Rest,
  name: string,
  spec: Record<string, unknown>,
): Promise<void> {
  const r = await rest.call("POST", `/apis/${danmGoGroup}/v1/clusternetworks`, {
    apiVersion: `${danmGoGroup}/v1`,
    kind: "ClusterNetwork",
    metadata: { name },
    spec,
  });
  if (r.status !== 201) throw new Error(`creating DANM ClusterNetwork ${name}: ${JSON.stringify(r.body)}`);
}

const crdFiles = [
  "crds/production/ClusterNetwork.yaml",
  "crds/production/TenantNetwork.yaml",
  "crds/production/TenantConfig.yaml",
  "crds/production/DanmEp.yaml",
  "crds/lightweight/DanmNet.yaml",
];
const rbacFiles = [
  "cni_config/danm_rbac.yaml",
  "manifests/webhook/webhook.yaml",
  "manifests/netwatcher/0netwatcher_rbac.yaml",
  "manifests/svcwatcher/0svcwatcher_rbac.yaml",
];
const rbacKinds = new Set(["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]);

/** Installs DANM v4.3.0's CRDs and RBAC (idempotent): what #19's upgrade test and the benches share. */
export async function installDanmGoApi(cluster: PeerCluster, build?: PeerBuild): Promise<PeerBuild> {
  const b = build ?? await ensureDanmGo();
  const rest = adminRest(cluster);
  try {
    const crds = (await Promise.all(crdFiles.map((f) => readManifests(`${b.manifests}/${f}`)))).flat();
    const rbac = (await Promise.all(rbacFiles.map((f) => readManifests(`${b.manifests}/${f}`)))).flat()
      .filter((m) => rbacKinds.has(m.kind));
    await applyManifests(rest, [...crds.map(danmCrdV1), ...rbac]);
  } finally {
    rest.close();
  }
  return b;
}

/**
 * Mounts a tmpfs on /var/log (for DANM's danm.log) when this process runs in a private mount namespace. Real nodes
 * (tests/harness/node) copy the mount namespace they start in: mount it before starting them.
 */
export async function privateVarLog(): Promise<void> {
  if (Deno.env.get(privateMountsEnv) !== "1") {
    throw new Error(
      "DANM v4.3.0's CNI writes /var/log/danm.log: run it in a private mount namespace (tests/harness/isolate.ts)",
    );
  }
  const mounts = await Deno.readTextFile("/proc/self/mountinfo");
  if (mounts.split("\n").some((l) => l.split(" ")[4] === "/var/log" && l.includes(" danm-peers-log "))) return;
  await run(["mount", "-t", "tmpfs", "danm-peers-log", "/var/log"]);
}

/** Converts DANM's MutatingWebhookConfiguration (admissionregistration v1beta1, by Service) to v1, by URL. */
function webhookConfiguration(m: Manifest, url: string, caPem: string): Manifest {
  const hooks = Array.isArray(m.webhooks) ? m.webhooks as Schema[] : [];
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: m.metadata.name },
    webhooks: hooks.map((h) => ({
      ...h,
      clientConfig: { url: `${url}${pick(h, "clientConfig", "service", "path") ?? ""}`, caBundle: btoa(caPem) },
      // DANM answers admission.k8s.io/v1beta1 AdmissionReviews only; v1 requires saying so, and side effects.
      admissionReviewVersions: ["v1beta1"],
      sideEffects: "None",
    })),
  };
}

/** Installs DANM v4.3.0 and starts its webhook; see the top of the file. */
export async function installDanmGo(cluster: PeerCluster, opts: { readonly dir?: string } = {}): Promise<DanmGo> {
  const build = await installDanmGoApi(cluster);
  await privateVarLog();
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "danm-go-" });
  const cniDir = `${dir}/net.d`;
  await Deno.mkdir(cniDir, { recursive: true });
  const binDir = await peerBinDir(`${dir}/bin`, { danm: `${build.dir}/danm`, fakeipam: `${build.dir}/fakeipam` });

  const rest = adminRest(cluster);
  let webhook: PeerProcess | undefined;
  let registered: string | undefined;
  const stop = async () => {
    if (registered) await rest.call("DELETE", registered).catch(() => {});
    registered = undefined;
    await webhook?.stop();
    rest.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const kubeconfigPath = `${dir}/danm-kubeconfig.yaml`;
    await Deno.writeTextFile(
      kubeconfigPath,
      tokenKubeconfig(cluster, "danm", await serviceAccountToken(rest, "kube-system", "danm")),
    );
    const shipped = JSON.parse(await Deno.readTextFile(`${build.manifests}/cni_config/00-danm.conf`));
    const netconf = { ...shipped, kubeconfig: kubeconfigPath, cniDir };

    const port = freePort();
    const serving = await cluster.pki.server("danm-go-webhook", { dns: ["localhost"], ips: ["127.0.0.1"] });
    const certs = "/etc/webhook/certs";
    webhook = await runInCluster({
      name: "danm-go-webhook",
      cluster,
      binary: `${build.dir}/webhook`,
      args: [
        `-tls-cert-bundle=${certs}/cert.pem`,
        `-tls-private-key-file=${certs}/key.pem`,
        `-bind-port=${port}`,
        "-bind-address=127.0.0.1",
      ],
      serviceAccount: {
        namespace: "kube-system",
        token: await serviceAccountToken(rest, "kube-system", "danm-webhook"),
      },
      files: { [`${certs}/cert.pem`]: serving.certPem, [`${certs}/key.pem`]: serving.keyPem },
      dir,
    });
    const shippedHook = (await readManifests(`${build.manifests}/manifests/webhook/webhook.yaml`))
      .find((m) => m.kind === "MutatingWebhookConfiguration");
    if (!shippedHook) throw new Error("DANM's webhook.yaml has no MutatingWebhookConfiguration");
    const hook = webhookConfiguration(shippedHook, `https://127.0.0.1:${port}`, cluster.pki.ca.certPem);
    await applyManifests(rest, [hook]);
    registered = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${hook.metadata.name}`;
    // Ready when the apiserver's dry-run of a network comes back with DANM's allocation state filled in.
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (webhook.exited()) throw new Error(`DANM's webhook exited:\n${await webhook.log()}`);
      const r = await rest.call("POST", `/apis/${danmGoGroup}/v1/clusternetworks?dryRun=All`, {
        apiVersion: `${danmGoGroup}/v1`,
        kind: "ClusterNetwork",
        metadata: { name: "danm-go-webhook-probe" },
        spec: { NetworkID: "probe", NetworkType: "ipvlan", Options: { host_device: "lo", cidr: "10.255.255.0/30" } },
      });
      if (r.status === 201 && pick(r.body, "spec", "Options", "alloc")) break;
      if (Date.now() > deadline) {
        throw new Error(`DANM's webhook does not answer: ${JSON.stringify(r.body)}\n${await webhook.log()}`);
      }
      await sleep(200);
    }
    const hookProc = webhook;
    return {
      build,
      binDir,
      cniDir,
      netconf,
      kubeconfigPath,
      webhook: hookProc,
      writeStaticConf: (networkId, conf) => Deno.writeTextFile(`${cniDir}/${networkId}.conf`, JSON.stringify(conf)),
      logs: async (lines = 30) => {
        const cni = (await Deno.readTextFile("/var/log/danm.log").catch(() => "")).split("\n").slice(-lines);
        return `--- DANM CNI (/var/log/danm.log) ---\n${cni.join("\n")}\n--- DANM webhook ---\n${await hookProc
          .log(lines)}`;
      },
      stop,
    };
  } catch (e) {
    const detail = webhook ? await webhook.log() : "";
    await stop();
    throw new Error(`installing DANM v4.3.0: ${e instanceof Error ? e.message : e}${detail ? `\n${detail}` : ""}`);
  }
}
