// Starts a real etcd + kube-apiserver on loopback for integration tests and hands out a kubeconfig.
//
// One instance serves a whole test run: the runner (tests/run.ts) starts it and exports
// DANM_TEST_KUBECONFIG; a test file run on its own starts a private instance instead.
import { createPki, type KeyPair, type Pki } from "./pki.ts";
import { freePort, repoRoot, run, sleep } from "./proc.ts";

export interface ApiServer {
  readonly url: string;
  readonly kubeconfigPath: string;
  readonly pki: Pki;
  readonly admin: KeyPair;
  /** The directory holding certificates, logs and etcd data of this instance. */
  readonly dir: string;
  /** Process IDs, for benchmarks that account the control plane's CPU (they change with restart()). */
  readonly pids: { readonly apiserver: number; readonly etcd: number };
  /**
   * Stops one component with `signal` (default SIGKILL), keeps it down for `downMs`, starts it again with the same
   * flags, ports and data (etcd keeps its data directory), and waits until the apiserver answers /readyz again.
   */
  restart(
    component: "apiserver" | "etcd",
    opts?: { readonly signal?: Deno.Signal; readonly downMs?: number },
  ): Promise<void>;
  stop(): Promise<void>;
}

/** Builds (or reuses from the versioned cache) kube-apiserver, etcd and the PodResources test server; their directory. */
export async function ensureK8sBinaries(): Promise<string> {
  const out = await run([`${repoRoot}/tests/tools/k8s/build.sh`], { inheritStderr: true });
  return out.trim().split("\n").pop()!;
}

function spawnLogged(bin: string, args: string[], logFile: string): Deno.ChildProcess {
  // Appends: a restarted component keeps the log of its earlier runs.
  const log = Deno.openSync(logFile, { write: true, create: true, append: true });
  const child = new Deno.Command(bin, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) log.writeSync(chunk);
  };
  Promise.all([pump(child.stdout), pump(child.stderr)]).finally(() => log.close()).catch(() => {});
  return child;
}

async function tail(file: string, lines = 40): Promise<string> {
  try {
    return (await Deno.readTextFile(file)).split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

async function stopChild(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    return; // already exited
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, 5000);
  await child.status;
  clearTimeout(timer);
}

export function kubeconfigYaml(url: string, ca: string, client: KeyPair): string {
  const b64 = (s: string) => btoa(s);
  return `apiVersion: v1
kind: Config
clusters:
- name: danm-test
  cluster:
    server: ${url}
    certificate-authority-data: ${b64(ca)}
users:
- name: admin
  user:
    client-certificate-data: ${b64(client.certPem)}
    client-key-data: ${b64(client.keyPem)}
contexts:
- name: danm-test
  context:
    cluster: danm-test
    user: admin
current-context: danm-test
`;
}

export interface ApiServerOptions {
  /** Working directory (certificates, logs, etcd data); its pki/ CA is reused when present. Default: a new one. */
  readonly dir?: string;
  /** More kube-apiserver flags (`--name=value`); one named here replaces the default's (e.g. --authorization-mode). */
  readonly extraArgs?: ReadonlyArray<string>;
  /** More IP addresses in the serving certificate (e.g. an advertise address, the `kubernetes` Service IP). */
  readonly servingIps?: ReadonlyArray<string>;
}

export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  // Another process can take a port between freePort() and the bind: start again on new ports then.
  for (let attempt = 1;; attempt++) {
    try {
      return await startApiServerOnce(opts);
    } catch (e) {
      if (attempt >= 3 || !(e instanceof PortTaken)) throw e;
      console.error(`[danm-test] ${e.message}; starting again on other ports`);
    }
  }
}

class PortTaken extends Error {}

async function startApiServerOnce(opts: ApiServerOptions): Promise<ApiServer> {
  const bin = await ensureK8sBinaries();
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "danm-apiserver-" });
  const pki = await createPki(`${dir}/pki`);
  const serving = await pki.server("apiserver", {
    dns: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
    ips: ["127.0.0.1", ...(opts.servingIps ?? [])],
  });
  const admin = await pki.client("admin", "admin", ["system:masters"]);
  await run(["openssl", "genrsa", "-out", `${dir}/sa.key`, "2048"]);
  await run(["openssl", "rsa", "-in", `${dir}/sa.key`, "-pubout", "-out", `${dir}/sa.pub`]);

  const etcdPort = freePort(), peerPort = freePort(), apiPort = freePort();
  const etcdArgs = [
    "--data-dir",
    `${dir}/etcd`,
    "--listen-client-urls",
    `http://127.0.0.1:${etcdPort}`,
    "--advertise-client-urls",
    `http://127.0.0.1:${etcdPort}`,
    "--listen-peer-urls",
    `http://127.0.0.1:${peerPort}`,
    "--initial-advertise-peer-urls",
    `http://127.0.0.1:${peerPort}`,
    "--initial-cluster",
    `default=http://127.0.0.1:${peerPort}`,
    "--unsafe-no-fsync",
    "--log-level",
    "warn",
  ];
  // A flag of extraArgs replaces the default's (list flags such as --authorization-mode would append otherwise).
  const flagName = (a: string) => a.split("=")[0];
  const overridden = new Set((opts.extraArgs ?? []).map(flagName));
  const apiserverArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${apiPort}`,
    `--tls-cert-file=${serving.certFile}`,
    `--tls-private-key-file=${serving.keyFile}`,
    `--client-ca-file=${pki.ca.certFile}`,
    "--authorization-mode=RBAC",
    "--disable-admission-plugins=ServiceAccount",
    "--service-account-issuer=https://kubernetes.default.svc",
    `--service-account-key-file=${dir}/sa.pub`,
    `--service-account-signing-key-file=${dir}/sa.key`,
    "--service-cluster-ip-range=10.0.0.0/24",
    "--allow-privileged=true",
    // DANM_APISERVER_PROFILING=1 serves /debug/pprof, for finding where the apiserver's time goes in a benchmark.
    `--profiling=${Deno.env.get("DANM_APISERVER_PROFILING") === "1"}`,
    "--v=1",
  ].filter((a) => !overridden.has(flagName(a))).concat(opts.extraArgs ?? []);
  const spawnEtcd = () => spawnLogged(`${bin}/etcd`, etcdArgs, `${dir}/etcd.log`);
  const spawnApiserver = () => spawnLogged(`${bin}/kube-apiserver`, apiserverArgs, `${dir}/apiserver.log`);
  const children = { etcd: spawnEtcd(), apiserver: spawnApiserver() };

  // If the test process exits without calling stop() (Deno.exit, an uncaught error), take the control plane
  // down with it instead of leaving orphans behind.
  const killOnExit = () => {
    for (const c of [children.apiserver, children.etcd]) {
      try {
        c.kill("SIGKILL");
      } catch { /* already gone */ }
    }
  };
  globalThis.addEventListener("unload", killOnExit);
  const url = `https://127.0.0.1:${apiPort}`;
  const client = Deno.createHttpClient({ caCerts: [pki.ca.certPem], cert: admin.certPem, key: admin.keyPem });
  const stop = async () => {
    globalThis.removeEventListener("unload", killOnExit);
    client.close();
    await stopChild(children.apiserver);
    await stopChild(children.etcd);
  };
  /** Waits for /readyz; `exited` says whether a component died meanwhile (with why). */
  const waitReady = async (exited: () => string) => {
    const deadline = Date.now() + 120_000;
    let last = "";
    while (true) {
      if (exited()) {
        const logs = `${await tail(`${dir}/etcd.log`)}\n${await tail(`${dir}/apiserver.log`)}`;
        await stop();
        if (logs.includes("address already in use")) throw new PortTaken(`${exited()}: a port was taken`);
        throw new Error(`${exited()} before it was ready\n${logs}`);
      }
      try {
        const res = await fetch(`${url}/readyz`, { client });
        last = `${res.status} ${await res.text()}`;
        if (res.status === 200) return;
      } catch (e) {
        last = String(e);
      }
      if (Date.now() > deadline) {
        const logs = `--- etcd ---\n${await tail(`${dir}/etcd.log`)}\n--- apiserver ---\n${await tail(
          `${dir}/apiserver.log`,
        )}`;
        await stop();
        throw new Error(`kube-apiserver not ready after 120 s (last: ${last})\n${logs}`);
      }
      await sleep(250);
    }
  };
  const watchExit = (cs: ReadonlyArray<readonly [string, Deno.ChildProcess]>) => {
    let exited = "";
    for (const [name, c] of cs) c.status.then((st) => exited ||= `${name} exited with ${st.code}`);
    return () => exited;
  };
  await waitReady(watchExit([["etcd", children.etcd], ["kube-apiserver", children.apiserver]]));
  const restart: ApiServer["restart"] = async (component, opts = {}) => {
    const child = children[component];
    try {
      child.kill(opts.signal ?? "SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await sleep(opts.downMs ?? 0);
    const fresh = component === "etcd" ? spawnEtcd() : spawnApiserver();
    children[component] = fresh;
    await waitReady(watchExit([[component, fresh]]));
  };
  const kubeconfigPath = `${dir}/kubeconfig`;
  await Deno.writeTextFile(kubeconfigPath, kubeconfigYaml(url, pki.ca.certPem, admin));
  return {
    url,
    kubeconfigPath,
    pki,
    admin,
    dir,
    get pids() {
      return { apiserver: children.apiserver.pid, etcd: children.etcd.pid };
    },
    restart,
    stop,
  };
}

/**
 * The host's address as QEMU's user-mode network shows it to the kernel tier's guest (it forwards to the host's
 * loopback): that tier's apiserver serves it too (servingIps).
 */
export const guestHostAddress = "10.0.2.2";

/** Describes an apiserver started by the test runner, passed to test processes through the environment. */
export interface SharedApiServer {
  readonly url: string;
  readonly kubeconfigPath: string;
  readonly pkiDir: string;
}

export const sharedEnvKey = "DANM_TEST_APISERVER";

export function sharedFromEnv(): SharedApiServer | undefined {
  const raw = Deno.env.get(sharedEnvKey);
  return raw ? JSON.parse(raw) as SharedApiServer : undefined;
}
