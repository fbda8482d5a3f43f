// Nodes for a peer, built like the danm stack's (tests/harness/stack.ts) so that both run on the same kind of
// node: per node a network namespace with the NIC `ens4` (a veth into a LAN bridge shared by all nodes: the MACVLAN
// parent), a Linux bridge joined across the nodes (for bridge networks spanning the cluster), a Ready `Node` object,
// and the same fake kubelet process (`fakelet_process.ts fakelet`) running the peer's CNI configuration from the
// peer's CNI bin directory, reaching the apiserver through the same loopback forward. The peer's plugins run in the
// node's namespace, as on a node.
import { type NetnsScope, netnsScope } from "../netns.ts";
import { sleep } from "../proc.ts";
import {
  decodeFakeletEvent,
  fakeletArgv,
  type FakeletEvent,
  type FakeletTuning,
  forward,
  type Proc,
  spawn,
} from "../stack.ts";
import { adminRest, type PeerCluster } from "./install.ts";

export interface PeerNodesOptions {
  readonly names: ReadonlyArray<string>;
  /** The bridge every node has, joined across the nodes. */
  readonly nodeBridge: string;
  /** The peer's CNI bin directory and the runtime's network configuration. */
  readonly binDir: string;
  readonly netconf: Readonly<Record<string, unknown>>;
  readonly tuning?: FakeletTuning;
  /** Every event the fake kubelets report (sandbox set up, failed, removed). */
  readonly onEvent: (node: string, event: FakeletEvent) => void;
}

export interface PeerNodes {
  /** Name of each node's network namespace (`ip netns` name), by node. */
  readonly netns: ReadonlyMap<string, string>;
  /** The fake kubelets, for CPU accounting (the CNI processes they exec count as theirs once reaped). */
  processes(): ReadonlyArray<{ readonly name: string; readonly pid: number }>;
  /** Throws when a fake kubelet exited on its own. */
  assertAlive(): void;
  logs(lines?: number): Promise<string>;
  /** Stops the fake kubelets at once (no CNI DEL), removes the namespaces, links, Node objects and files. */
  stop(): Promise<void>;
}

export async function startPeerNodes(cluster: PeerCluster, o: PeerNodesOptions): Promise<PeerNodes> {
  const id = crypto.randomUUID().slice(0, 4);
  const dir = await Deno.makeTempDir({ prefix: `peer-nodes-${id}-` });
  const scope: NetnsScope = netnsScope();
  const rest = adminRest(cluster);
  const api = new URL(cluster.url);
  const apiSocket = `${dir}/apiserver.sock`;
  const apiListener = Deno.listen({ transport: "unix", path: apiSocket });
  const forwarding = forward(apiListener, () => Deno.connect({ hostname: api.hostname, port: Number(api.port) }));
  const procs: Proc[] = [];
  const netns = new Map<string, string>();
  const ready = new Set<string>();
  const killOnUnload = () => procs.forEach((p) => p.kill());
  globalThis.addEventListener("unload", killOnUnload);

  const assertAlive = () => {
    const dead = procs.filter((p) => p.exited && !p.stopping);
    if (dead.length) {
      throw new Error(`fake kubelet(s) exited: ${dead.map((p) => `${p.name} (${p.logFile})`).join(", ")}`);
    }
  };
  const logs = async (lines = 20) =>
    (await Promise.all(
      procs.map(async (p) =>
        `--- ${p.name} ---\n${
          (await Deno.readTextFile(p.logFile).catch(() => "")).split("\n").slice(-lines).join("\n")
        }`
      ),
    )).join("\n");
  const stop = async () => {
    globalThis.removeEventListener("unload", killOnUnload);
    // The pods' sandboxes are not torn down one by one (a peer's DEL of a thousand pods would take minutes):
    // their namespaces go, and with them every interface in them.
    procs.forEach((p) => (p.stopping = true, p.kill()));
    await Promise.all(procs.map((p) => p.status));
    for (const n of o.names) await rest.call("DELETE", `/api/v1/nodes/${n}`).catch(() => {});
    await scope.dispose();
    apiListener.close();
    await forwarding;
    rest.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    const lan = `pl${id}`, joined = `pj${id}`;
    await scope.bridge(lan);
    await scope.bridge(joined);
    const netconfFile = `${dir}/netconf.json`;
    await Deno.writeTextFile(netconfFile, JSON.stringify(o.netconf));
    for (const [i, name] of o.names.entries()) {
      const ns = await scope.netns(`pn${id}${i}`);
      netns.set(name, ns);
      await scope.veth({ name: `pe${id}${i}` }, { name: "ens4", ns });
      await scope.ip(undefined, "link", "set", `pe${id}${i}`, "master", lan);
      await scope.bridge(o.nodeBridge, ns);
      await scope.veth({ name: `pb${id}${i}` }, { name: "bup0", ns });
      await scope.ip(ns, "link", "set", "bup0", "master", o.nodeBridge);
      await scope.ip(undefined, "link", "set", `pb${id}${i}`, "master", joined);
      const created = await rest.call("POST", "/api/v1/nodes", {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name },
      });
      if (created.status !== 201) throw new Error(`Node ${name}: ${JSON.stringify(created.body)}`);
      const now = new Date().toISOString();
      await rest.call("PATCH", `/api/v1/nodes/${name}/status`, {
        status: {
          conditions: [{
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "fake kubelet",
            lastHeartbeatTime: now,
            lastTransitionTime: now,
          }],
        },
      });
      procs.push(spawn(
        `fakelet-${name}`,
        fakeletArgv({
          netnsPath: scope.path(ns),
          node: name,
          kubeconfig: cluster.kubeconfigPath,
          binDir: o.binDir,
          netconfFile,
          apiPort: Number(api.port),
          apiSocket,
          ...(o.tuning ? { tuning: o.tuning } : {}),
        }),
        {
          logDir: dir,
          onStdoutLine: (line) => {
            let e: FakeletEvent;
            try {
              e = decodeFakeletEvent(JSON.parse(line));
            } catch {
              return; // an ordinary log line
            }
            if (e.event === "ready") ready.add(name);
            o.onEvent(name, e);
          },
        },
      ));
    }
    const deadline = Date.now() + 120_000;
    while (ready.size < o.names.length) {
      assertAlive();
      if (Date.now() > deadline) throw new Error(`fake kubelets not ready after 120 s`);
      await sleep(100);
    }
  } catch (e) {
    const detail = await logs();
    await stop();
    throw new Error(`starting the peer's nodes: ${e instanceof Error ? e.message : e}\n${detail}`);
  }
  return { netns, processes: () => procs.map((p) => ({ name: p.name, pid: p.pid })), assertAlive, logs, stop };
}
