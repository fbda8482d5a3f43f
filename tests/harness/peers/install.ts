// Installs a peer on the test apiserver the way its manifests do: its CRDs, ServiceAccounts, ClusterRoles and
// bindings (real identities: each peer talks to the apiserver with its ServiceAccount's token, never as admin), and
// runs its in-cluster processes (a webhook, a node controller) as their pods would run them: a static Go binary in
// a root of its own (chroot) holding the projected ServiceAccount files, KUBERNETES_SERVICE_HOST/PORT set, on the
// host network.
import * as k8s from "@kubernetes/client-node";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { pick, type Rest, restClient } from "../../integration/api/rest.ts";
import type { Pki } from "../pki.ts";
import { ensureCniPlugins } from "../cniplugins.ts";
import { sleep, which } from "../proc.ts";

export type Manifest = Record<string, unknown> & {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string } & Record<string, unknown>;
};

/** The test apiserver as a peer installer needs it. */
export interface PeerCluster {
  readonly url: string;
  /** Admin kubeconfig: the installer's own identity. */
  readonly kubeconfigPath: string;
  /** The apiserver's CA: peers verify the apiserver with it; it signs their serving certificates. */
  readonly pki: Pki;
}

/** The documents of a (multi-document) YAML manifest file. Duplicate keys (DANM has some) keep the last value. */
export async function readManifests(file: string): Promise<Manifest[]> {
  const docs = yaml.loadAll(await Deno.readTextFile(file), null, { json: true });
  return docs.filter((d): d is Manifest => typeof d === "object" && d !== null && "kind" in d);
}

const plural = (kind: string) => `${kind.toLowerCase()}s`;
/** Kinds this installer applies; the workloads of a manifest (DaemonSet, Deployment) are run by the harness. */
const applicable = new Set([
  "Namespace",
  "ServiceAccount",
  "ConfigMap",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  "CustomResourceDefinition",
  "MutatingWebhookConfiguration",
  "ValidatingWebhookConfiguration",
]);
const clusterScoped = new Set([
  "Namespace",
  "ClusterRole",
  "ClusterRoleBinding",
  "CustomResourceDefinition",
  "MutatingWebhookConfiguration",
  "ValidatingWebhookConfiguration",
]);

/** The collection URL path of a manifest's kind. */
export function collectionPath(m: Manifest): string {
  if (!applicable.has(m.kind)) throw new Error(`the peer installer does not apply ${m.kind} objects`);
  const base = m.apiVersion.includes("/") ? `/apis/${m.apiVersion}` : `/api/${m.apiVersion}`;
  const ns = clusterScoped.has(m.kind) ? "" : `/namespaces/${m.metadata.namespace ?? "default"}`;
  return `${base}${ns}/${plural(m.kind)}`;
}

/** Creates each object, or replaces one that is there (several test files and benches share apiservers). */
export async function applyManifests(rest: Rest, manifests: ReadonlyArray<Manifest>): Promise<void> {
  for (const m of manifests) {
    const collection = collectionPath(m);
    const path = `${collection}/${m.metadata.name}`;
    for (let attempt = 0;; attempt++) {
      const created = await rest.call("POST", collection, m);
      if (created.status === 201) break;
      if (created.status === 409 && attempt < 10) {
        const existing = await rest.call("GET", path);
        if (existing.status === 404) continue;
        const resourceVersion = pick(existing.body, "metadata", "resourceVersion");
        const replaced = await rest.call("PUT", path, { ...m, metadata: { ...m.metadata, resourceVersion } });
        if (replaced.status === 200) break;
        if (replaced.status === 409) continue;
        throw new Error(`replacing ${m.kind} ${m.metadata.name}: ${JSON.stringify(replaced.body)}`);
      }
      throw new Error(`creating ${m.kind} ${m.metadata.name}: ${JSON.stringify(created.body)}`);
    }
  }
  const crds = manifests.filter((m) => m.kind === "CustomResourceDefinition").map((m) => m.metadata.name);
  await Promise.all(crds.map((name) => crdEstablished(rest, name)));
}

async function crdEstablished(rest: Rest, name: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const r = await rest.call("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
    const conditions = pick(r.body, "status", "conditions");
    if (Array.isArray(conditions) && conditions.some((c) => c.type === "Established" && c.status === "True")) return;
    if (Date.now() > deadline) throw new Error(`CRD ${name} not Established after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** A rest client with the cluster's admin identity. */
export function adminRest(cluster: PeerCluster): Rest {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  return restClient(kc);
}

/** A token of ServiceAccount namespace/name (created when missing), as a pod's projected token volume holds. */
export async function serviceAccountToken(rest: Rest, namespace: string, name: string): Promise<string> {
  const sa = await rest.call("POST", `/api/v1/namespaces/${namespace}/serviceaccounts`, {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name, namespace },
  });
  if (sa.status !== 201 && sa.status !== 409) throw new Error(`ServiceAccount ${namespace}/${name}: ${sa.body}`);
  const r = await rest.call("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { expirationSeconds: 24 * 3600 },
  });
  const token = pick(r.body, "status", "token");
  if (r.status !== 201 || typeof token !== "string") {
    throw new Error(`token of ServiceAccount ${namespace}/${name}: ${JSON.stringify(r.body)}`);
  }
  return token;
}

/** A kubeconfig file authenticating with a ServiceAccount token, as the peers' install scripts generate them. */
export function tokenKubeconfig(cluster: PeerCluster, user: string, token: string): string {
  return yaml.dump({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: "test",
      cluster: { server: cluster.url, "certificate-authority-data": btoa(cluster.pki.ca.certPem) },
    }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: user, context: { cluster: "test", user } }],
    "current-context": user,
  });
}

/**
 * A CNI bin directory as a peer's node has it: the reference plugins (delegates, host-local) and the peer's own
 * binaries (name → path), symlinked into `dir`.
 */
export async function peerBinDir(dir: string, own: Readonly<Record<string, string>>): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const plugins = await ensureCniPlugins();
  for await (const e of Deno.readDir(plugins)) await Deno.symlink(`${plugins}/${e.name}`, `${dir}/${e.name}`);
  for (const [name, path] of Object.entries(own)) await Deno.symlink(path, `${dir}/${name}`);
  return dir;
}

/** A process of a peer running as its pod would; stop() ends it. */
export interface PeerProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves when the process exits on its own or is stopped. */
  readonly status: Promise<Deno.CommandStatus>;
  exited(): boolean;
  log(lines?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface InClusterOptions {
  readonly name: string;
  readonly cluster: PeerCluster;
  /** The static binary, copied to /<basename> of the root. */
  readonly binary: string;
  readonly args: ReadonlyArray<string>;
  readonly serviceAccount: { readonly namespace: string; readonly token: string };
  /** Extra files of the pod's root (volume mounts): absolute path inside → content. */
  readonly files?: Readonly<Record<string, string>>;
  readonly env?: Readonly<Record<string, string>>;
  /** The root and the log go here. */
  readonly dir: string;
}

/**
 * Runs a static Go binary as an in-cluster pod: chroot'ed into a root of its own with the ServiceAccount files at
 * /var/run/secrets/kubernetes.io/serviceaccount and the apiserver as KUBERNETES_SERVICE_HOST/PORT (client-go's
 * in-cluster configuration), in the current network namespace (the peers' pods use the host network).
 */
export async function runInCluster(o: InClusterOptions): Promise<PeerProcess> {
  const root = `${o.dir}/${o.name}-root`;
  const sa = "/var/run/secrets/kubernetes.io/serviceaccount";
  const files: Record<string, string> = {
    [`${sa}/token`]: o.serviceAccount.token,
    [`${sa}/ca.crt`]: o.cluster.pki.ca.certPem,
    [`${sa}/namespace`]: o.serviceAccount.namespace,
    ...o.files,
  };
  await Deno.mkdir(`${root}/tmp`, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    await Deno.mkdir(`${root}${path.replace(/\/[^/]+$/, "")}`, { recursive: true });
    await Deno.writeTextFile(`${root}${path}`, content);
  }
  const bin = `/${o.binary.split("/").pop()}`;
  await Deno.copyFile(o.binary, `${root}${bin}`);
  await Deno.chmod(`${root}${bin}`, 0o755);
  const url = new URL(o.cluster.url);
  const logFile = `${o.dir}/${o.name}.log`;
  const log = await Deno.open(logFile, { write: true, create: true, truncate: true });
  const chroot = await which("chroot");
  if (!chroot) throw new Error("chroot is not on PATH");
  const child = new Deno.Command(chroot, {
    args: [root, bin, ...o.args],
    clearEnv: true,
    env: {
      PATH: "/",
      KUBERNETES_SERVICE_HOST: url.hostname,
      KUBERNETES_SERVICE_PORT: url.port || "443",
      ...o.env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pumped = Promise.all([child.stdout, child.stderr].map(async (s) => {
    for await (const chunk of s) log.writeSync(chunk);
  })).catch(() => {});
  let done = false;
  const status = child.status.then(async (s) => {
    done = true;
    await pumped;
    log.close();
    return s;
  });
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  };
  globalThis.addEventListener("unload", kill);
  return {
    name: o.name,
    pid: child.pid,
    logFile,
    status,
    exited: () => done,
    log: async (lines = 30) => (await Deno.readTextFile(logFile).catch(() => "")).split("\n").slice(-lines).join("\n"),
    stop: async () => {
      globalThis.removeEventListener("unload", kill);
      if (!done) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        const timer = setTimeout(kill, 5_000);
        await status;
        clearTimeout(timer);
      }
    },
  };
}
