// The danm CNI on the in-memory layers: a MemoryApiServer, a simulated kernel with a host NIC `ens4`, an in-memory
// filesystem holding static delegate configs and fake CNI plugins (registered programs) standing in for the
// reference ones. The node handler is driven directly with thin-client requests, as the socket would.
import { Effect, Exit, Layer, Logger, Schema, Scope } from "effect";
import { jsonLogger } from "../../../adapters/cli/logging.ts";
import {
  ClusterNetworkResource,
  DanmNetResource,
  type Network,
  type NetworkSpec,
  TenantNetworkResource,
} from "../../../core/api/danm.ts";
import { type Pod, PodResource } from "../../../core/api/k8s.ts";
import { type CniNodeOptions, type CniNodeService, makeHandler } from "../../../core/cni/node.ts";
import { Kube, type KubeError, type KubeService, KubeUnavailable } from "../../../core/ports/kube.ts";
import { Netlink, NetnsRef } from "../../../core/ports/netlink.ts";
import { Process } from "../../../core/ports/process.ts";
import { layerMemoryFs, MemoryFileSystem } from "../../../adapters/fs/memory.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import * as MemNetlink from "../../../adapters/netlink/memory.ts";
import { type FakeInvocation, type FakeOutput, MemoryProcess } from "../../../adapters/process/memory.ts";
import { layerMemoryPolicyTables, type MemoryPolicyTables } from "../../../adapters/nftables/memory.ts";
import { localSandboxes } from "../../../core/cni/policy.ts";
import { engineRenderer, make as makeNetpol, NetpolController } from "../../../core/netpol/controller.ts";

export const binDir = "/opt/cni/bin";
export const cniDir = "/etc/cni/net.d";
export const nodeName = "node-a";

export interface CniAnswer {
  readonly code: number;
  readonly stdout: string;
  readonly json: unknown;
}

export interface World {
  readonly server: MemoryApiServer;
  readonly kube: KubeService;
  readonly kernel: MemNetlink.MemoryKernel;
  readonly netlink: Netlink["Service"];
  readonly process: MemoryProcess;
  readonly fs: MemoryFileSystem;
  readonly node: CniNodeService;
  /** Another node handler on this world (a restarted daemon), living as long as the world. */
  readonly newNode: (options?: Partial<CniNodeOptions>) => Promise<CniNodeService>;
  readonly run: <A, E>(e: Effect.Effect<A, E, Kube | Netlink>) => Promise<A>;
  /** Runs the node handler as the thin client would. */
  readonly call: (
    program: "danm" | "fakeipam",
    env: Readonly<Record<string, string>>,
    stdin: unknown,
  ) => Promise<CniAnswer>;
  readonly dispose: () => Promise<void>;
}

const JsonObject = Schema.Record(Schema.String, Schema.Unknown);
const decodeConf = (inv: FakeInvocation) =>
  Schema.decodeUnknownSync(JsonObject)(JSON.parse(new TextDecoder().decode(inv.stdin)));

/**
 * A fake `macvlan` plugin over the simulated kernel: creates the link in CNI_NETNS, gets addresses from its IPAM
 * (fakeipam, through the daemon, as the real plugin would exec it, or static), answers in the config's version.
 */
const fakeMacvlan = (w: () => World) => (inv: FakeInvocation): Effect.Effect<FakeOutput> =>
  Effect.gen(function* () {
    const conf = decodeConf(inv);
    const env = inv.env;
    const version = String(conf.cniVersion);
    const nl = w().netlink;
    if (env.CNI_COMMAND === "DEL") {
      if (env.CNI_NETNS) {
        yield* Effect.scoped(Effect.gen(function* () {
          const pod = yield* nl.netns(NetnsRef.path(env.CNI_NETNS));
          yield* pod.deleteLink(env.CNI_IFNAME);
        })).pipe(Effect.ignore);
      }
      return {};
    }
    if (env.CNI_COMMAND === "CHECK") {
      const ok = yield* Effect.scoped(Effect.gen(function* () {
        const pod = yield* nl.netns(NetnsRef.path(env.CNI_NETNS));
        yield* pod.link(env.CNI_IFNAME);
      })).pipe(Effect.as(true), Effect.orElseSucceed(() => false));
      return ok ? {} : { code: 1, stdout: JSON.stringify({ cniVersion: version, code: 4, msg: "link missing" }) };
    }
    if (env.CNI_COMMAND !== "ADD") return {};
    const ipam = conf.ipam as { type?: string } | undefined;
    let ips: Array<{ address: string }> = [];
    if (ipam?.type === "fakeipam") {
      const a = yield* Effect.promise(() =>
        w().call("fakeipam", {
          CNI_COMMAND: "ADD",
          CNI_CONTAINERID: env.CNI_CONTAINERID,
          CNI_NETNS: env.CNI_NETNS,
          CNI_IFNAME: env.CNI_IFNAME,
        }, conf)
      );
      if (a.code !== 0) return { code: a.code, stdout: a.stdout };
      ips = (a.json as { ips: Array<{ address: string }> }).ips;
    } else if (ipam?.type === "static") {
      // The reference `static` IPAM plugin (core/cni/attach/ipamhandoff.ts): its addresses, as it would answer.
      ips = (ipam as { addresses: Array<{ address: string }> }).addresses.map(({ address }) => ({ address }));
    }
    const made = yield* Effect.scoped(Effect.gen(function* () {
      const podRef = NetnsRef.path(env.CNI_NETNS);
      yield* nl.host.createLink({
        kind: "macvlan",
        name: env.CNI_IFNAME,
        parent: String(conf.master),
        mode: "bridge",
        netns: podRef,
        ...(typeof conf.mtu === "number" ? { mtu: conf.mtu } : {}),
      });
      const pod = yield* nl.netns(podRef);
      for (const ip of ips) yield* pod.addAddress({ link: env.CNI_IFNAME, cidr: ip.address });
      yield* pod.setLink(env.CNI_IFNAME, { up: true });
      return yield* pod.link(env.CNI_IFNAME);
    })).pipe(Effect.result);
    if (made._tag === "Failure") {
      return { code: 1, stdout: JSON.stringify({ cniVersion: version, code: 11, msg: made.failure.message }) };
    }
    const legacy = version.startsWith("0.");
    return {
      stdout: JSON.stringify({
        cniVersion: version,
        interfaces: [{ name: env.CNI_IFNAME, mac: made.success.mac, sandbox: env.CNI_NETNS }],
        ips: ips.map((i) => ({
          ...(legacy ? { version: i.address.includes(":") ? "6" : "4" } : {}),
          address: i.address,
          interface: 0,
        })),
      }),
    };
  });

/** Fails ADD with a CNI error; DEL succeeds (so a rollback can run it). */
export const failingPlugin = (inv: FakeInvocation): Effect.Effect<FakeOutput> =>
  Effect.succeed(
    inv.env.CNI_COMMAND === "ADD"
      ? { code: 1, stdout: JSON.stringify({ cniVersion: "1.0.0", code: 7, msg: "deliberate failure" }) }
      : {},
  );

/** Never answers ADD (until interrupted). */
export const sleepingPlugin = (inv: FakeInvocation): Effect.Effect<FakeOutput> =>
  inv.env.CNI_COMMAND === "ADD" ? Effect.as(Effect.sleep("1 hour"), {}) : Effect.succeed({});

export interface WorldOptions extends Partial<CniNodeOptions> {
  /** Wraps the Kube service the node uses (fault injection). */
  readonly wrapKube?: (k: KubeService) => KubeService;
  /** Collects the node's log as the daemons write it (JSON lines). */
  readonly logLines?: string[];
  /** Runs the node agent's policy controller next to the daemon (as cmd/netwatcher does), on these tables. */
  readonly policyTables?: MemoryPolicyTables;
}

/** A `wrapKube` whose GETs fail as an unreachable apiserver's while `down` is set (STATUS, readiness). */
export function getOutage(): { down: boolean; readonly wrapKube: (k: KubeService) => KubeService } {
  const outage = {
    down: false,
    wrapKube: (k: KubeService): KubeService => ({
      ...k,
      get: (rt, name, o) =>
        outage.down
          ? Effect.fail(new KubeUnavailable({ verb: "get", kind: rt.kind, detail: "injected outage" }))
          : k.get(rt, name, o),
    }),
  };
  return outage;
}

export async function makeWorld(opts: WorldOptions = {}): Promise<World> {
  const { wrapKube, logLines, policyTables, ...options } = opts;
  const server = new MemoryApiServer();
  const kernel = new MemNetlink.MemoryKernel({
    hostNics: [{ name: "ens4", mtu: 1500 }, { name: "ens5", mtu: 9000 }, { name: "ens6", mtu: 1500 }],
  });
  const netlink = MemNetlink.make(kernel);
  const process = new MemoryProcess();
  const fs = new MemoryFileSystem();
  const scope = Scope.makeUnsafe();
  const kube = await Effect.runPromise(makeMemoryKube(server).pipe(Scope.provide(scope)));
  const nodeKube = wrapKube ? wrapKube(kube) : kube;
  const layers = Layer.mergeAll(
    Layer.succeed(Kube, kube),
    Layer.succeed(Netlink, netlink),
    Layer.succeed(Process, process.service),
    layerMemoryFs(fs),
  );
  const policy = policyTables
    ? await Effect.runPromise(
      makeNetpol({
        nodeName,
        render: engineRenderer,
        // As the node agent wires it: the controller follows the daemon's pods by their sandbox records.
        sandboxes: Effect.provide(localSandboxes("/run/danm/sandboxes", nodeName), layerMemoryFs(fs)),
      }).pipe(
        Effect.provideService(Kube, kube),
        Effect.provide(layerMemoryPolicyTables(policyTables)),
        Scope.provide(scope),
      ),
    )
    : undefined;
  const newNode = (more: Partial<CniNodeOptions> = {}) =>
    Effect.runPromise(
      makeHandler({
        nodeName,
        socketPath: "/run/danm/danm.sock",
        stateDir: "/run/danm/sandboxes",
        attachTimeoutMs: 2_000,
        gcGraceSeconds: 0,
        retryPeriodMs: 60_000,
        ...options,
        ...more,
      }).pipe(
        Effect.provideService(Kube, nodeKube),
        policy ? Effect.provideService(NetpolController, policy) : (e) => e,
        Effect.provide(layers),
        Effect.provide(logLines ? Logger.layer([jsonLogger((l) => logLines.push(l))]) : Layer.empty),
        Scope.provide(scope),
      ),
    );
  const node = await newNode();
  const call: World["call"] = async (program, env, stdin) => {
    const r = await Effect.runPromise(
      node.handle({ program, env, stdin: typeof stdin === "string" ? stdin : JSON.stringify(stdin) }),
    );
    let json: unknown = undefined;
    try {
      json = r.stdout ? JSON.parse(r.stdout) : undefined;
    } catch { /* not JSON */ }
    return { code: r.code, stdout: r.stdout, json };
  };
  const holder: { world?: World } = {};
  process.register(`${binDir}/macvlan`, fakeMacvlan(() => holder.world!));
  process.register(`${binDir}/failing`, failingPlugin);
  process.register(`${binDir}/sleeper`, sleepingPlugin);
  fs.seed({
    [`${binDir}/macvlan`]: "",
    [`${binDir}/failing`]: "",
    [`${binDir}/sleeper`]: "",
  });
  const world: World = {
    server,
    kube,
    kernel,
    netlink,
    process,
    fs,
    node,
    newNode,
    run: (e) => Effect.runPromise(Effect.provide(e, layers)),
    call,
    dispose: () => Effect.runPromise(Scope.close(scope, Exit.void)),
  };
  holder.world = world;
  // Caches first: a node answers STATUS "not ready" until then.
  for (let i = 0; i < 200 && (await Effect.runPromise(node.unsynced)).length > 0; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  return world;
}

export const danmConf = (cniVersion = "1.1.0", extra: Record<string, unknown> = {}) => ({
  cniVersion,
  name: "danm_meta_cni",
  type: "danm",
  cniDir,
  ...extra,
});

export async function createNetwork(
  w: World,
  kind: "DanmNet" | "TenantNetwork" | "ClusterNetwork",
  name: string,
  spec: NetworkSpec,
  namespace = "default",
) {
  const object = { metadata: { name, ...(kind === "ClusterNetwork" ? {} : { namespace }) }, spec };
  const created: Effect.Effect<Network, KubeError> = kind === "DanmNet"
    ? w.kube.create(DanmNetResource, object)
    : kind === "TenantNetwork"
    ? w.kube.create(TenantNetworkResource, object)
    : w.kube.create(ClusterNetworkResource, object);
  return await Effect.runPromise(created);
}

/**
 * DanmNet `mv`: a delegate — a static `<cniDir>/mvnet.conf` running the (fake) macvlan plugin on ens5 — with danm's
 * IPAM on `options` (default 10.30.0.0/24) for pods that ask for an address. The tests of delegate mechanics use it:
 * the `macvlan` NetworkType is built in and starts no process.
 */
export async function createDelegatedNetwork(
  w: World,
  { cniVersion = "1.0.0", options = { cidr: "10.30.0.0/24" } }: {
    readonly cniVersion?: string;
    readonly options?: NetworkSpec["Options"];
  } = {},
) {
  w.fs.seed({
    [`${cniDir}/mvnet.conf`]: JSON.stringify({
      cniVersion,
      name: "mvnet",
      type: "macvlan",
      master: "ens5",
      mode: "bridge",
    }),
  });
  return await createNetwork(w, "DanmNet", "mv", { NetworkID: "mvnet", NetworkType: "macvlan-conf", Options: options });
}

export async function createPod(
  w: World,
  name: string,
  annotations: Record<string, string> = {},
  namespace = "default",
  labels: Record<string, string> = { app: name },
): Promise<Pod> {
  return await Effect.runPromise(w.kube.create(PodResource, {
    metadata: { name, namespace, labels, annotations },
    spec: { nodeName, containers: [{ name: "c", image: "pause" }] },
  }));
}

let sandboxSeq = 0;

/** A pod sandbox: a named namespace in the simulated kernel and a container ID. */
export function sandbox(w: World): { containerId: string; netns: string; name: string } {
  const name = `sb${++sandboxSeq}`;
  const netns = w.kernel.createNetns(name);
  return { containerId: `${name}${"0".repeat(40)}`, netns, name };
}

/** The environment a kubelet-driven runtime sets for `command`. */
export function cniEnv(
  command: string,
  sb: { containerId: string; netns: string } | undefined,
  pod?: Pod,
): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_PATH: binDir,
    ...(sb ? { CNI_CONTAINERID: sb.containerId, CNI_NETNS: sb.netns, CNI_IFNAME: "eth0" } : {}),
    ...(pod
      ? {
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.metadata.namespace};K8S_POD_NAME=${pod.metadata.name};` +
          `K8S_POD_INFRA_CONTAINER_ID=${sb?.containerId ?? ""};K8S_POD_UID=${pod.metadata.uid}`,
      }
      : {}),
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
