// The danm CNI node handler in the QEMU guest (real kernel with ipvlan, 802.1Q, dummy): no apiserver there, so it runs
// on the in-memory Kube layer with the live netlink, process and filesystem layers, driven with the thin client's
// requests. iproute2 is the independent observer.
import { Effect, Exit, Layer, Schema, Scope } from "effect";
import type { PodDevicesService } from "../../../core/ports/pod_devices.ts";
import { type CniNodeService, makeHandler } from "../../../core/cni/node.ts";
import { Fs } from "../../../core/ports/filesystem.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { Netlink } from "../../../core/ports/netlink.ts";
import { Process } from "../../../core/ports/process.ts";
import { makeLiveFs } from "../../../adapters/fs/live.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import * as LiveNetlink from "../../../adapters/netlink/live.ts";
import { makeLiveProcess } from "../../../adapters/process/live.ts";
import { layerLivePolicyTables } from "../../../adapters/nftables/live.ts";
import {
  engineRenderer,
  make as makeNetpol,
  NetpolController,
  type NetpolControllerConfig,
  type NetpolControllerService,
} from "../../../core/netpol/controller.ts";
import { type NetnsScope, netnsScope } from "../../harness/netns.ts";
import { IpAddr } from "../../harness/iproute.ts";

const IpLink = Schema.Struct({
  ifname: Schema.String,
  mtu: Schema.Number,
  flags: Schema.Array(Schema.String),
  link: Schema.optionalKey(Schema.NullOr(Schema.String)),
  link_index: Schema.optionalKey(Schema.Number),
  linkinfo: Schema.optionalKey(Schema.Struct({
    info_kind: Schema.String,
    info_data: Schema.optionalKey(Schema.Struct({ mode: Schema.optionalKey(Schema.String) })),
  })),
});
export const links = async (s: NetnsScope, ns: string) =>
  Schema.decodeUnknownSync(Schema.Array(IpLink))(await s.ipJson(ns, "-d", "link", "show"));
export const addrs = async (s: NetnsScope, ns: string) =>
  Schema.decodeUnknownSync(Schema.Array(IpAddr))(await s.ipJson(ns, "addr", "show"));

export interface Env {
  readonly scope: NetnsScope;
  /** With `policy`: the node agent's policy controller (live nft tables), which the ADD programs pods through. */
  readonly policy?: NetpolControllerService;
  readonly kube: KubeService;
  readonly node: CniNodeService;
  readonly run: string;
  readonly call: (
    env: Record<string, string>,
    stdin: unknown,
  ) => Promise<{ code: number; json: unknown; stdout: string }>;
  readonly dispose: () => Promise<void>;
}

export async function setup(
  opts: {
    readonly podDevices?: PodDevicesService;
    readonly kube?: KubeService;
    /** Runs the policy controller next to the node handler, as cmd/netwatcher does. */
    readonly policy?: Partial<NetpolControllerConfig>;
  } = {},
): Promise<Env> {
  const scope = netnsScope();
  const effectScope = Scope.makeUnsafe();
  const id = crypto.randomUUID().slice(0, 5);
  const tmp = await Deno.makeTempDir({ prefix: "danm-kcni-" });
  const dispose = async () => {
    await Effect.runPromise(Scope.close(effectScope, Exit.void));
    await scope.dispose();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  };
  try {
    // The in-memory apiserver unless the test brings a live one (the kernel tier's, on the host).
    const kube = opts.kube ??
      await Effect.runPromise(makeMemoryKube(new MemoryApiServer()).pipe(Scope.provide(effectScope)));
    const netlink = await Effect.runPromise(LiveNetlink.make().pipe(Scope.provide(effectScope)));
    const layers = Layer.mergeAll(
      Layer.succeed(Kube, kube),
      Layer.succeed(Netlink, netlink),
      Layer.succeed(Process, makeLiveProcess()),
      Layer.succeed(Fs, makeLiveFs()),
    );
    const policy = opts.policy
      ? await Effect.runPromise(
        makeNetpol({ nodeName: "guest", render: engineRenderer, ...opts.policy }).pipe(
          Effect.provide(Layer.provideMerge(layerLivePolicyTables(), layers)),
          Scope.provide(effectScope),
        ),
      )
      : undefined;
    const node = await Effect.runPromise(
      makeHandler({
        nodeName: "guest",
        socketPath: `${tmp}/danm.sock`,
        stateDir: `${tmp}/state`,
        ...(opts.podDevices ? { podDevices: opts.podDevices } : {}),
      }).pipe(
        policy ? Effect.provideService(NetpolController, policy) : (e) => e,
        Effect.provide(layers),
        Scope.provide(effectScope),
      ),
    );
    for (let i = 0; i < 200 && (await Effect.runPromise(node.unsynced)).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const call: Env["call"] = async (env, stdin) => {
      const r = await Effect.runPromise(node.handle({ program: "danm", env, stdin: JSON.stringify(stdin) }));
      return { code: r.code, stdout: r.stdout, json: r.stdout ? JSON.parse(r.stdout) : undefined };
    };
    return { scope, kube, node, run: id, call, dispose, ...(policy ? { policy } : {}) };
  } catch (e) {
    await dispose();
    throw e;
  }
}

export const conf = { cniVersion: "1.1.0", name: "danm_meta_cni", type: "danm", cniDir: "/nonexistent" };
