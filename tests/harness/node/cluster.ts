// A real-node Kubernetes cluster on one machine, for the node tier, bench:node and `sim --real --kubelet`:
//
//   - the control plane: etcd + kube-apiserver (Node,RBAC authorization, NodeRestriction and ServiceAccount admission,
//     aggregator routing so it dials webhook endpoints directly), kube-controller-manager (service-account
//     credentials per controller), kube-scheduler — each with its own client certificate;
//   - N nodes, each a network namespace (underlay NIC `ens3` on a shared bridge, the Node's InternalIP; spare NIC
//     `ens4`; optional bridges joined across nodes) AND a mount namespace in which per-node directories are
//     bind-mounted over the paths a node owns (/opt/cni/bin, /etc/cni/net.d, /var/lib/kubelet, /var/lib/danm,
//     /run/danm, /var/lib/cni, /var/lib/containerd, /run/containerd, /var/log/pods; a tmpfs on /run/netns), so
//     the hostPath volumes of danm's DaemonSet are per node. In it run containerd (Debian's 1.6, CRI), a kubelet
//     v1.34 (client certificate CN=system:node:<name>, its own cgroup subtree) and kube-proxy (nftables mode), all
//     real processes;
//   - the cluster's primary CNI: a bridge with a per-node /24 (host-local), the nodes and the control plane routed
//     to each other's pod subnets over the underlay (host-gw), so pods reach the apiserver through the `kubernetes`
//     Service (kube-proxy) and the apiserver reaches the webhook's pods;
//   - danm deployed as a user deploys it (k8s/README.md): `kubectl apply -k k8s/crds`, the kube-system `default`
//     network, then `kubectl apply -k` of an overlay of k8s/ that only points the images at the locally built ones.
//     Nodes register with a taint that is lifted once danm's node agent runs there, so no pod starts on a node
//     before danm is its CNI.
//
// startNodeCluster → (kubectl / kube / pod helpers) → stop(). stop() kills what it started — processes of each node's
// mount namespace and cgroup subtree included (containerd's shims outlive containerd) — and removes what it created,
// also after a failure. Run it in a private network and mount namespace (the test runner's tiers do).
import * as k8s from "@kubernetes/client-node";
import { relative } from "node:path";
import { Effect, Exit, Schema, Scope } from "effect";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { pick, type Rest, restClient } from "../../integration/api/rest.ts";
import { type ApiServer, kubeconfigYaml, startApiServer } from "../apiserver.ts";
import { ensureCniPlugins } from "../cniplugins.ts";
import { type NetnsScope, netnsScope } from "../netns.ts";
import { createPki, type Pki } from "../pki.ts";
import { repoRoot, run, sleep } from "../proc.ts";
import { eventually } from "../eventually.ts";
import { assertProcsAlive, type Proc, procLogs, spawn } from "../stack.ts";
import { type NodeBinaries, pauseImage, preparedNodeBinaries } from "./binaries.ts";
import { containerdConfig, kubeletConfig, kubeProxyConfig, primaryCniConfig } from "./config.ts";

export interface NodeClusterOptions {
  /** Node names, or how many nodes (`node-1` …). Default 2. */
  readonly nodes?: number | ReadonlyArray<string>;
  /** Linux bridges created in every node and joined across nodes, for bridge networks spanning the cluster. */
  readonly nodeBridges?: ReadonlyArray<string>;
  /** First three octets of the underlay /24. Default "10.87.0"; the control plane is .254. */
  readonly underlay?: string;
  /** Node i's pod subnet is `${podSubnets}.${i + 1}.0/24`. Default "10.244". */
  readonly podSubnets?: string;
  readonly maxPods?: number;
  /** Deploy danm (`kubectl apply -k`). Default true. */
  readonly deployDanm?: boolean;
  /** Prepared outside the private namespace (builds need the network). Default: what prepareNodeBinaries handed over. */
  readonly binaries?: NodeBinaries;
  readonly log?: (line: string) => void;
  /** For everything to come up. Default 300 s. */
  readonly startTimeoutMs?: number;
}

export interface ClusterNode {
  readonly name: string;
  /** `ip netns` name of the node's network namespace. */
  readonly netns: string;
  readonly underlayIp: string;
  /** The primary network's subnet on this node. */
  readonly podSubnet: string;
  /** The node's private directory (its bind-mount sources live here). */
  readonly dir: string;
  /** containerd's socket, as seen from the harness. */
  readonly containerdSocket: string;
}

export interface PodLink {
  readonly name: string;
  readonly kind: string;
  readonly addresses: ReadonlyArray<string>;
  readonly mtu: number;
}

export interface NodeCluster extends AsyncDisposable {
  readonly run: string;
  readonly dir: string;
  readonly api: ApiServer;
  /** The admin's kubeconfig (loopback URL). */
  readonly kubeconfigPath: string;
  readonly kubeConfig: k8s.KubeConfig;
  readonly rest: Rest;
  readonly kube: KubeService;
  /** The apiserver's URL as the nodes (and processes on them) reach it. */
  readonly internalUrl: string;
  readonly nodes: ReadonlyArray<ClusterNode>;
  readonly binaries: NodeBinaries;
  /** The danm images the cluster runs (component → reference). */
  readonly images: Readonly<Record<string, string>>;
  /** The primary CNI's network name (its configuration file is `<name>.conf` on every node). */
  readonly primaryNetwork: string;
  kubeRun<A, E>(e: Effect.Effect<A, E, Kube>): Promise<A>;
  /** kubectl with the admin's kubeconfig; throws on a non-zero exit. */
  kubectl(args: ReadonlyArray<string>, stdin?: string): Promise<string>;
  /** crictl against a node's containerd. */
  crictl(node: string, args: ReadonlyArray<string>): Promise<string>;
  /**
   * Writes a file into every node's CNI configuration directory (atomically), as an operator installs one; `text`
   * may be made per node.
   */
  writeCniConfig(file: string, text: string | ((node: ClusterNode) => string | Promise<string>)): Promise<void>;
  /** Puts a plugin binary into every node's CNI bin directory as `name` (a hard link or a copy: no symlink). */
  installCniPlugin(name: string, binary: string): Promise<void>;
  /** Runs argv in a node's network and mount namespace. */
  nodeExec(node: string, argv: ReadonlyArray<string>): Promise<string>;
  /** `/proc/<pid>/ns/net` of the pod's sandbox (found through its node's containerd). */
  podNetns(namespace: string, name: string): Promise<string>;
  /** Runs argv (a command of this machine) in the pod's network namespace. */
  podExec(namespace: string, name: string, argv: ReadonlyArray<string>): Promise<string>;
  /** True when one of `count` pings from the pod is answered. */
  podPing(namespace: string, name: string, target: string, count?: number): Promise<boolean>;
  /** The pod's interfaces but lo, as the kernel sees them. */
  podLinks(namespace: string, name: string): Promise<PodLink[]>;
  /** Stops a node's kubelet and starts it again (pods keep running meanwhile). */
  restartKubelet(node: string): Promise<void>;
  /** Installs danm (when deployDanm was false, or again after a change). */
  deployDanm(): Promise<void>;
  /** The last lines of every process's log. */
  logs(lines?: number): Promise<string>;
  /** Throws when a process of the cluster exited on its own. */
  assertAlive(): void;
  stop(): Promise<void>;
}

/** Nodes register with this taint; it is removed once danm's node agent is Ready there. */
export const notInstalledTaint = "danm.test/danm-not-installed";

/** Waits for the default ServiceAccount the controller-manager creates with a namespace: pods can't be made before. */
export function defaultServiceAccount(c: Pick<NodeCluster, "kubectl">, namespace: string): Promise<boolean> {
  return eventually(
    `the default ServiceAccount of ${namespace}`,
    async () => {
      await c.kubectl(["get", "serviceaccount", "default", "-n", namespace]);
      return true;
    },
    60_000,
    500,
  );
}

/** Paths a node owns: bind-mounted from per-node directories inside the node's mount namespace. */
const nodePaths = [
  "/opt/cni/bin",
  "/etc/cni/net.d",
  "/var/lib/kubelet",
  "/var/lib/danm",
  "/var/lib/cni",
  "/var/lib/containerd",
  "/var/log/pods",
  "/run/containerd",
  "/run/danm",
] as const;
const slug = (path: string) => path.slice(1).replaceAll("/", "-");

const IpAddr = Schema.Array(Schema.Struct({
  ifname: Schema.String,
  mtu: Schema.Number,
  linkinfo: Schema.optionalKey(Schema.Struct({ info_kind: Schema.optionalKey(Schema.String) })),
  addr_info: Schema.optionalKey(Schema.Array(Schema.Struct({
    local: Schema.String,
    prefixlen: Schema.Number,
    scope: Schema.optionalKey(Schema.String),
  }))),
}));
const decodeIpAddr = Schema.decodeUnknownSync(IpAddr);

const CriPods = Schema.Struct({ items: Schema.Array(Schema.Struct({ id: Schema.String, state: Schema.String })) });
const CriInspect = Schema.Struct({ info: Schema.Struct({ pid: Schema.Number }) });

/** cgroup v1 hierarchies (and the unified one) of this machine: where each node's cgroup subtree is made. */
async function cgroupHierarchies(): Promise<string[]> {
  const out: string[] = [];
  for (const line of (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-");
    if (sep < 0) continue;
    const fstype = f[sep + 1], mountPoint = f[4];
    if ((fstype === "cgroup" || fstype === "cgroup2") && mountPoint.startsWith("/sys/fs/cgroup")) out.push(mountPoint);
  }
  return out;
}

/** Removes a cgroup subtree, children first (processes must be gone). */
async function removeCgroup(path: string): Promise<void> {
  const st = await Deno.stat(path).catch(() => undefined);
  if (!st?.isDirectory) return;
  for await (const e of Deno.readDir(path)) if (e.isDirectory) await removeCgroup(`${path}/${e.name}`);
  for (let i = 0; i < 20; i++) {
    try {
      await Deno.remove(path);
      return;
    } catch {
      await sleep(250);
    }
  }
}

/** Every PID in a cgroup subtree. */
function cgroupPids(path: string): number[] {
  const pids: number[] = [];
  const walk = (dir: string) => {
    try {
      for (const l of Deno.readTextFileSync(`${dir}/cgroup.procs`).split("\n")) if (l) pids.push(Number(l));
      for (const e of Deno.readDirSync(dir)) if (e.isDirectory) walk(`${dir}/${e.name}`);
    } catch { /* gone */ }
  };
  walk(path);
  return pids;
}

/** Every PID whose mount namespace is `mntNs` (an `mnt:[inode]` link text). */
function mountNsPids(mntNs: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readLinkSync(`/proc/${e.name}/ns/mnt`) === mntNs) pids.push(Number(e.name));
    } catch { /* exited */ }
  }
  return pids;
}

function killAll(pids: ReadonlyArray<number>): void {
  for (const pid of pids) {
    if (pid === Deno.pid) continue;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* exited */ }
  }
}

export async function startNodeCluster(options: NodeClusterOptions = {}): Promise<NodeCluster> {
  const log = options.log ?? (() => {});
  const runId = crypto.randomUUID().replaceAll("-", "").slice(0, 6);
  const nodeNames = typeof options.nodes === "object"
    ? [...options.nodes]
    : Array.from({ length: options.nodes ?? 2 }, (_, i) => `node-${i + 1}`);
  const underlay = options.underlay ?? "10.87.0";
  const controlIp = `${underlay}.254`;
  const podSubnets = options.podSubnets ?? "10.244";
  const startTimeoutMs = options.startTimeoutMs ?? 300_000;
  const primaryNetwork = "k8s-pods";
  // The cluster runs in a private network namespace: what needs downloading was prepared before (prepareNodeBinaries).
  const binaries = options.binaries ?? await preparedNodeBinaries();
  const bin = (name: string) => `${binaries.dir}/${name}`;

  const dir = await Deno.makeTempDir({ prefix: `danm-node-${runId}-` });
  const logDir = `${dir}/logs`;
  await Deno.mkdir(logDir);
  const procs: Proc[] = [];
  const scope: NetnsScope = netnsScope();
  const nodes: ClusterNode[] = [];
  const nodeState = new Map<string, { mntNs: string; mntFile: string; cgroups: string[]; kubeletArgv: string[] }>();
  const kubeletProcs = new Map<string, Proc>();
  const kubeScope = Scope.makeUnsafe();
  let api: ApiServer | undefined;
  let rest: Rest | undefined;
  let kube: KubeService | undefined;
  let stopped: Promise<void> | undefined;
  let internalUrl = "";

  const spawnLogged = (name: string, argv: ReadonlyArray<string>) => {
    const p = spawn(name, argv, { logDir });
    procs.push(p);
    return p;
  };
  const inNode = (node: string, argv: ReadonlyArray<string>) => {
    const n = nodeByName(node);
    return ["nsenter", `--net=${scope.path(n.netns)}`, `--mount=${nodeState.get(n.name)!.mntFile}`, "--", ...argv];
  };
  const nodeByName = (name: string) => {
    const n = nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} in this cluster`);
    return n;
  };

  /** Kills every process of the nodes (their mount namespaces and cgroup subtrees), synchronously. */
  const killNodes = () => {
    for (const st of nodeState.values()) {
      killAll(mountNsPids(st.mntNs));
      for (const cg of st.cgroups) killAll(cgroupPids(cg));
    }
  };
  const killOnUnload = () => {
    procs.forEach((p) => p.kill());
    killNodes();
  };
  globalThis.addEventListener("unload", killOnUnload);

  const assertAlive = () => assertProcsAlive(procs, "cluster");
  const logs = (lines = 30) => procLogs(procs, lines);

  const adminKubeconfig = `${dir}/admin.kubeconfig`;
  const kubectl = (args: ReadonlyArray<string>, stdin?: string) =>
    run([bin("kubectl"), `--kubeconfig=${adminKubeconfig}`, ...args], stdin === undefined ? {} : { stdin });
  const crictl = (node: string, args: ReadonlyArray<string>) =>
    run([
      bin("crictl"),
      "--runtime-endpoint",
      `unix://${nodeByName(node).containerdSocket}`,
      "--timeout",
      "30s",
      ...args,
    ]);
  const kubeRun = <A, E>(e: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provideService(e, Kube, kube!));

  const podNode = async (namespace: string, name: string) => {
    const r = await rest!.call("GET", `/api/v1/namespaces/${namespace}/pods/${name}`);
    const node = pick(r.body, "spec", "nodeName");
    if (r.status !== 200 || typeof node !== "string") {
      throw new Error(`pod ${namespace}/${name} is not bound (${r.status})`);
    }
    return node;
  };
  const podNetns = async (namespace: string, name: string) => {
    const node = await podNode(namespace, name);
    const pods = Schema.decodeUnknownSync(CriPods)(
      JSON.parse(await crictl(node, ["pods", "--name", `^${name}$`, "--namespace", `^${namespace}$`, "-o", "json"])),
    ).items.filter((p) => p.state === "SANDBOX_READY");
    if (pods.length !== 1) throw new Error(`pod ${namespace}/${name}: ${pods.length} ready sandboxes on ${node}`);
    const info = Schema.decodeUnknownSync(CriInspect)(
      JSON.parse(await crictl(node, ["inspectp", "-o", "json", pods[0].id])),
    );
    return `/proc/${info.info.pid}/ns/net`;
  };
  const podExec = async (namespace: string, name: string, argv: ReadonlyArray<string>) =>
    run(["nsenter", `--net=${await podNetns(namespace, name)}`, "--", ...argv]);

  const startKubelet = (node: string) => {
    const p = spawnLogged(`kubelet-${node}`, nodeState.get(node)!.kubeletArgv);
    kubeletProcs.set(node, p);
    return p;
  };

  const stop = () =>
    stopped ??= (async () => {
      globalThis.removeEventListener("unload", killOnUnload);
      // Nodes first: kubelets and proxies, then everything left in each node (containers, shims, containerd).
      await Promise.all(procs.filter((p) => /^(kubelet|kube-proxy)-/.test(p.name)).map((p) => p.stop(5_000)));
      killNodes();
      await Promise.all(procs.map((p) => p.stop(5_000)));
      for (let i = 0; i < 20 && [...nodeState.values()].some((s) => mountNsPids(s.mntNs).length > 0); i++) {
        killNodes();
        await sleep(250);
      }
      for (const st of nodeState.values()) for (const cg of st.cgroups) await removeCgroup(cg);
      await Effect.runPromise(Scope.close(kubeScope, Exit.void)).catch(() => {});
      rest?.close();
      await api?.stop();
      await scope.dispose();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();

  try {
    const pki: Pki = await createPki(`${dir}/pki`);
    const kubeletClient = await pki.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", [
      "system:masters",
    ]);

    // The control plane's side of the underlay, and the shared segments.
    const underlayBridge = `nu${runId}`, lanBridge = `ne${runId}`;
    await scope.bridge(underlayBridge);
    await scope.ip(undefined, "link", "set", underlayBridge, "type", "bridge", "mcast_snooping", "0");
    await scope.ip(undefined, "addr", "add", `${controlIp}/24`, "dev", underlayBridge);
    await scope.bridge(lanBridge);
    const bridges = options.nodeBridges ?? [];
    for (const [b] of bridges.entries()) await scope.bridge(`nb${b}${runId}`);

    log("starting etcd + kube-apiserver");
    api = await startApiServer({
      dir,
      servingIps: [controlIp, "10.0.0.1"],
      extraArgs: [
        "--bind-address=0.0.0.0",
        `--advertise-address=${controlIp}`,
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--disable-admission-plugins=",
        "--enable-aggregator-routing=true",
        `--kubelet-client-certificate=${kubeletClient.certFile}`,
        `--kubelet-client-key=${kubeletClient.keyFile}`,
        "--kubelet-preferred-address-types=InternalIP",
      ],
    });
    const apiPort = new URL(api.url).port;
    internalUrl = `https://${controlIp}:${apiPort}`;
    await Deno.writeTextFile(adminKubeconfig, kubeconfigYaml(api.url, pki.ca.certPem, api.admin));
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(adminKubeconfig);
    rest = restClient(kubeConfig);
    kube = await Effect.runPromise(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: adminKubeconfig }, userAgent: `node-cluster/${runId}` })
        .pipe(Scope.provide(kubeScope)),
    );
    const identity = async (file: string, url: string, user: string, groups: string[]) => {
      const cert = await pki.client(file, user, groups);
      await Deno.writeTextFile(`${dir}/${file}.kubeconfig`, kubeconfigYaml(url, pki.ca.certPem, cert));
      return `${dir}/${file}.kubeconfig`;
    };

    const kcm = await identity("kube-controller-manager", api.url, "system:kube-controller-manager", []);
    spawnLogged("kube-controller-manager", [
      bin("kube-controller-manager"),
      `--kubeconfig=${kcm}`,
      `--authentication-kubeconfig=${kcm}`,
      `--authorization-kubeconfig=${kcm}`,
      "--use-service-account-credentials=true",
      `--root-ca-file=${pki.ca.certFile}`,
      `--service-account-private-key-file=${dir}/sa.key`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      "--secure-port=0",
      "--kube-api-qps=100",
      "--kube-api-burst=200",
      "--concurrent-deployment-syncs=10",
      "--concurrent-replicaset-syncs=10",
      "--v=1",
    ]);
    const scheduler = await identity("kube-scheduler", api.url, "system:kube-scheduler", []);
    spawnLogged("kube-scheduler", [
      bin("kube-scheduler"),
      `--kubeconfig=${scheduler}`,
      `--authentication-kubeconfig=${scheduler}`,
      `--authorization-kubeconfig=${scheduler}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      "--secure-port=0",
      "--kube-api-qps=100",
      "--kube-api-burst=200",
      "--v=1",
    ]);

    const plugins = await ensureCniPlugins();
    const hierarchies = await cgroupHierarchies();
    const proxyKubeconfig = await identity("kube-proxy", internalUrl, "system:kube-proxy", []);
    for (const [i, name] of nodeNames.entries()) {
      const nodeDir = `${dir}/nodes/${name}`;
      await Deno.mkdir(nodeDir, { recursive: true });
      const ns = await scope.netns(`nn${runId}${i}`);
      const underlayIp = `${underlay}.${i + 1}`;
      const podSubnet = `${podSubnets}.${i + 1}.0/24`;
      await scope.veth({ name: `nu${runId}${i}` }, { name: "ens3", ns });
      await scope.ip(undefined, "link", "set", `nu${runId}${i}`, "master", underlayBridge);
      await scope.ip(ns, "addr", "add", `${underlayIp}/24`, "dev", "ens3");
      await scope.ip(ns, "route", "add", "default", "via", controlIp);
      await scope.veth({ name: `ne${runId}${i}` }, { name: "ens4", ns });
      await scope.ip(undefined, "link", "set", `ne${runId}${i}`, "master", lanBridge);
      for (const [b, bridge] of bridges.entries()) {
        await scope.bridge(bridge, ns);
        await scope.veth({ name: `nb${b}${runId}${i}` }, { name: `bup${b}`, ns });
        await scope.ip(ns, "link", "set", `bup${b}`, "master", bridge);
        await scope.ip(undefined, "link", "set", `nb${b}${runId}${i}`, "master", `nb${b}${runId}`);
      }
      // A node routes: its pods reach the control plane and other nodes' pods through it.
      await scope.exec(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
      // The control plane and the other nodes reach this node's pods over the underlay (host-gw).
      await scope.ip(undefined, "route", "add", podSubnet, "via", underlayIp);
      for (const other of nodes) {
        await scope.ip(ns, "route", "add", other.podSubnet, "via", other.underlayIp);
        await scope.ip(other.netns, "route", "add", podSubnet, "via", underlayIp);
      }

      // The node's mount namespace, held by a process of its own, with the node's paths bind-mounted.
      const holder = spawnLogged(`mnt-${name}`, [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sleep",
        "infinity",
      ]);
      const mntFile = `/proc/${holder.pid}/ns/mnt`;
      const ownNs = await Deno.readLink("/proc/self/ns/mnt");
      const mntNs = await eventually(
        `the mount namespace of ${name}`,
        async () => {
          assertAlive();
          const ns = await Deno.readLink(mntFile);
          return ns !== ownNs ? ns : undefined;
        },
        10_000,
        50,
      );
      const inMnt = (argv: string[]) => run(["nsenter", `--mount=${mntFile}`, "--", ...argv]);
      // Shared, as on a host booted by systemd: the runtime requires it of hostPath volumes with mount propagation.
      await inMnt(["mount", "--make-rshared", "/"]);
      for (const path of nodePaths) {
        await Deno.mkdir(`${nodeDir}/${slug(path)}`, { recursive: true });
        // The mount point itself is created once on this machine (empty; nothing of a node is ever written there).
        await Deno.mkdir(path, { recursive: true });
        await inMnt(["mount", "--bind", `${nodeDir}/${slug(path)}`, path]);
      }
      // The runtime's network namespaces (its own per node), shared so that the node agent's container sees new ones.
      await Deno.mkdir("/run/netns", { recursive: true });
      await inMnt(["mount", "-t", "tmpfs", `danm-node-netns-${name}`, "/run/netns"]);
      await inMnt(["mount", "--make-shared", "/run/netns"]);

      const cgroupRoot = `/danm-${runId}-${name}`;
      const cgroups = hierarchies.map((h) => `${h}${cgroupRoot}`);
      for (const cg of cgroups) {
        await Deno.mkdir(cg, { recursive: true });
        if (cg.includes("/cpuset/")) {
          for (const f of ["cpuset.cpus", "cpuset.mems"]) {
            await Deno.writeTextFile(`${cg}/${f}`, await Deno.readTextFile(`${cg.replace(cgroupRoot, "")}/${f}`));
          }
        }
      }

      // The node's software: the reference CNI plugins (hard links: a container must not see a symlink into this
      // machine's cache), the primary CNI's configuration.
      for await (const e of Deno.readDir(plugins)) {
        const to = `${nodeDir}/opt-cni-bin/${e.name}`;
        await Deno.link(`${plugins}/${e.name}`, to).catch(() => Deno.copyFile(`${plugins}/${e.name}`, to));
      }
      await Deno.writeTextFile(
        `${nodeDir}/etc-cni-net.d/${primaryNetwork}.conf`,
        primaryCniConfig(primaryNetwork, podSubnet),
      );

      await Deno.writeTextFile(`${nodeDir}/containerd.toml`, containerdConfig(pauseImage));
      const socket = `${nodeDir}/run-containerd/containerd.sock`;
      nodeState.set(name, { mntNs, mntFile, cgroups, kubeletArgv: [] });
      nodes.push({ name, netns: ns, underlayIp, podSubnet, dir: nodeDir, containerdSocket: socket });
      spawnLogged(`containerd-${name}`, inNode(name, ["containerd", "--config", `${nodeDir}/containerd.toml`]));
      await eventually(
        `containerd on ${name}`,
        async () => {
          assertAlive();
          await run(["ctr", "--address", socket, "version"]);
          return true;
        },
        60_000,
        250,
      );
      for (const archive of [binaries.pauseArchive, binaries.danm.archive]) {
        await run(["ctr", "--address", socket, "-n", "k8s.io", "images", "import", "--digests", archive]);
      }

      const kubeletKubeconfig = await identity(`kubelet-${name}`, internalUrl, `system:node:${name}`, ["system:nodes"]);
      await Deno.writeTextFile(
        `${nodeDir}/kubelet.yaml`,
        kubeletConfig({
          caFile: pki.ca.certFile,
          cgroupRoot,
          maxPods: options.maxPods ?? 150,
          taints: options.deployDanm === false ? [] : [{ key: notInstalledTaint, effect: "NoSchedule" }],
        }),
      );
      nodeState.get(name)!.kubeletArgv = inNode(name, [
        bin("kubelet"),
        `--config=${nodeDir}/kubelet.yaml`,
        `--kubeconfig=${kubeletKubeconfig}`,
        `--hostname-override=${name}`,
        `--node-ip=${underlayIp}`,
        "--v=1",
      ]);
      startKubelet(name);
      await Deno.writeTextFile(`${nodeDir}/kube-proxy.yaml`, kubeProxyConfig(proxyKubeconfig, name));
      spawnLogged(
        `kube-proxy-${name}`,
        inNode(name, [bin("kube-proxy"), `--config=${nodeDir}/kube-proxy.yaml`, "--v=1"]),
      );
    }

    await eventually(
      "every node to register and be Ready",
      async () => {
        assertAlive();
        const r = await rest!.call("GET", "/api/v1/nodes");
        const items = pick(r.body, "items");
        const ready = (Array.isArray(items) ? items : []).filter((n) =>
          (pick(n, "status", "conditions") as Array<{ type: string; status: string }> | undefined)
            ?.some((c) => c.type === "Ready" && c.status === "True")
        );
        return ready.length === nodeNames.length ? true : undefined;
      },
      startTimeoutMs,
      500,
    );
    log(`nodes Ready: ${nodeNames.join(", ")}`);
  } catch (e) {
    const detail = await logs(25);
    await stop().catch(() => {});
    throw new Error(`starting the real-node cluster: ${e instanceof Error ? e.message : e}\n${detail}`);
  }

  const cluster: NodeCluster = {
    run: runId,
    dir,
    api: api!,
    kubeconfigPath: adminKubeconfig,
    kubeConfig: (() => {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(adminKubeconfig);
      return kc;
    })(),
    rest: rest!,
    kube: kube!,
    internalUrl,
    nodes,
    binaries,
    images: binaries.danm.refs,
    primaryNetwork,
    kubeRun,
    kubectl,
    crictl,
    writeCniConfig: async (file, text) => {
      if (!/^[\w.-]+$/.test(file)) throw new Error(`not a plain file name: ${file}`);
      for (const n of nodes) {
        await Deno.writeTextFile(
          `${n.dir}/etc-cni-net.d/.${file}.tmp`,
          typeof text === "string" ? text : await text(n),
        );
        await Deno.rename(`${n.dir}/etc-cni-net.d/.${file}.tmp`, `${n.dir}/etc-cni-net.d/${file}`);
      }
    },
    installCniPlugin: async (name, binary) => {
      if (!/^[\w.-]+$/.test(name)) throw new Error(`not a plain file name: ${name}`);
      for (const n of nodes) {
        const tmp = `${n.dir}/opt-cni-bin/.${name}.tmp`;
        await Deno.link(binary, tmp).catch(() => Deno.copyFile(binary, tmp));
        await Deno.rename(tmp, `${n.dir}/opt-cni-bin/${name}`);
      }
    },
    nodeExec: (node, argv) => run(inNode(node, argv)),
    podNetns,
    podExec,
    podPing: (namespace, name, target, count = 2) =>
      podExec(namespace, name, ["ping", target.includes(":") ? "-6" : "-4", "-c", String(count), "-W", "2", target])
        .then(() => true, () => false),
    podLinks: async (namespace, name) => {
      const raw = await podExec(namespace, name, ["ip", "-d", "-json", "addr", "show"]);
      return decodeIpAddr(raw.trim() ? JSON.parse(raw) : []).filter((l) => l.ifname !== "lo").map((l) => ({
        name: l.ifname,
        kind: l.linkinfo?.info_kind ?? "",
        mtu: l.mtu,
        addresses: (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`),
      }));
    },
    restartKubelet: async (node) => {
      const p = kubeletProcs.get(node);
      if (!p) throw new Error(`no kubelet on ${node}`);
      await p.stop(10_000);
      procs.splice(procs.indexOf(p), 1);
      startKubelet(node);
    },
    deployDanm: () => deployDanm(cluster, { log, timeoutMs: startTimeoutMs }),
    logs,
    assertAlive,
    stop,
    [Symbol.asyncDispose]: stop,
  };
  if (options.deployDanm !== false) {
    try {
      await cluster.deployDanm();
    } catch (e) {
      const detail = await logs(25);
      await stop().catch(() => {});
      throw new Error(`deploying danm: ${e instanceof Error ? e.message : e}\n${detail}`);
    }
  }
  return cluster;
}

/**
 * Installs danm as k8s/README.md tells a user: the CRDs, the kube-system `default` network (on the primary CNI),
 * then the base through an overlay that only points the images at the local ones (pull policy Never: an image that
 * is not on the node fails the pod instead of a pull). Waits until every component is Ready, lifting each node's
 * taint once the node agent runs there.
 */
async function deployDanm(c: NodeCluster, o: { log: (l: string) => void; timeoutMs: number }): Promise<void> {
  const t = Date.now();
  await c.kubectl(["apply", "-k", `${repoRoot}/k8s/crds`]);
  await c.kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
  await c.kubectl(
    ["apply", "-f", "-"],
    JSON.stringify({
      apiVersion: "danm.io/v1",
      kind: "DanmNet",
      metadata: { name: "default", namespace: "kube-system" },
      spec: { NetworkID: c.primaryNetwork, NetworkType: "bridge" },
    }),
  );
  const overlay = `${c.dir}/danm-overlay`;
  await Deno.mkdir(overlay, { recursive: true });
  const images = Object.entries(c.images).map(([name, ref]) => {
    const at = ref.lastIndexOf(":");
    return { name, newName: ref.slice(0, at), newTag: ref.slice(at + 1) };
  });
  const pullNever = (kind: string, paths: string[]) => ({
    target: { kind },
    patch: JSON.stringify(
      paths.map((p) => ({ op: "add", path: `/spec/template/spec/${p}/imagePullPolicy`, value: "Never" })),
    ),
  });
  await Deno.writeTextFile(
    `${overlay}/kustomization.yaml`,
    JSON.stringify({
      apiVersion: "kustomize.config.k8s.io/v1beta1",
      kind: "Kustomization",
      // kustomize takes no absolute path: the base, relative to the overlay.
      resources: [relative(overlay, `${repoRoot}/k8s`)],
      images,
      patches: [
        pullNever("DaemonSet", ["initContainers/0", "containers/0"]),
        pullNever("Deployment", ["containers/0"]),
      ],
    }),
  );
  await c.kubectl(["apply", "-k", overlay]);
  o.log(`kubectl apply -k ${overlay} (base k8s/, images ${images.map((i) => `${i.newName}:${i.newTag}`).join(", ")})`);

  const untainted = new Set<string>();
  await eventually(
    "danm's node agent to be Ready on every node",
    async () => {
      c.assertAlive();
      const r = await c.rest.call(
        "GET",
        "/api/v1/namespaces/kube-system/pods?labelSelector=app.kubernetes.io%2Fname%3Ddanm-netwatcher",
      );
      for (const p of (pick(r.body, "items") as unknown[] | undefined) ?? []) {
        const node = pick(p, "spec", "nodeName");
        const ready = (pick(p, "status", "conditions") as Array<{ type: string; status: string }> | undefined)
          ?.some((x) => x.type === "Ready" && x.status === "True");
        if (typeof node === "string" && ready && !untainted.has(node)) {
          await c.kubectl(["taint", "node", node, `${notInstalledTaint}:NoSchedule-`]);
          untainted.add(node);
          o.log(`danm's node agent Ready on ${node} after ${((Date.now() - t) / 1000).toFixed(0)}s`);
        }
      }
      return untainted.size === c.nodes.length ? true : undefined;
    },
    o.timeoutMs,
    1000,
  );
  for (const d of ["danm-webhook", "danm-svcwatcher"]) {
    await eventually(
      `deployment ${d} to be available`,
      async () => {
        c.assertAlive();
        const r = await c.rest.call("GET", `/apis/apps/v1/namespaces/kube-system/deployments/${d}`);
        const want = pick(r.body, "spec", "replicas"), ready = pick(r.body, "status", "readyReplicas");
        return typeof want === "number" && ready === want ? true : undefined;
      },
      o.timeoutMs,
      1000,
    );
  }
  o.log(`danm deployed in ${((Date.now() - t) / 1000).toFixed(0)}s`);
}
