// A simulated node: its kernel (in-memory netlink) with the host NICs addressed, its Node object, and danm's node
// agent on it — netwatcher and the CNI daemon — over that kernel, the shared memory filesystem and a process table
// of simulated delegate plugins (fakeipam among them, asking this node's daemon as the real thin client does).
import { Effect, Layer } from "effect";
import type { MemoryFileSystem } from "../fs/memory.ts";
import { layerMemoryFs } from "../fs/memory.ts";
import * as MemNetlink from "../netlink/memory.ts";
import { MemoryProcess } from "../process/memory.ts";
import { registerSimulatedDelegates } from "./delegates.ts";
import { simDevicePlugin } from "./devices.ts";
import { NodeResource } from "../../core/api/k8s.ts";
import { makeHandler } from "../../core/cni/node.ts";
import { make as makeNetwatcher } from "../../core/netwatcher/agent.ts";
import { Kube, type KubeService } from "../../core/ports/kube.ts";
import { Netlink } from "../../core/ports/netlink.ts";
import { Process } from "../../core/ports/process.ts";
import type { SimNode } from "../../core/sim/scenario.ts";
import type { SimOutcome } from "../../core/sim/report.ts";

/** Where the simulated nodes have their CNI plugins and configuration. */
export const binDir = "/opt/cni/bin";
export const cniDir = "/etc/cni/net.d";

export interface NodeCtx {
  readonly node: SimNode;
  readonly index: number;
  readonly kernel: MemNetlink.MemoryKernel;
  readonly netlink: Netlink["Service"];
  readonly handle: (request: unknown) => Effect.Effect<{ code: number; stdout: string; stderr: string }>;
  readonly reconcile: Effect.Effect<unknown, unknown>;
}

/** The node `index` of the scenario, up and running (its Node object created). */
export const startNode = (kube: KubeService, fs: MemoryFileSystem, node: SimNode, index: number) =>
  Effect.gen(function* () {
    const kernel = new MemNetlink.MemoryKernel({
      hostNics: node.hostInterfaces.map((name) => ({ name, mtu: 1500 })),
    });
    const netlink = MemNetlink.make(kernel);
    // Every NIC sits on its own underlay subnet (the first on 192.168.100.0/24, the next on .101 …): VXLAN
    // needs a source address on its host device, as on a real node.
    for (const [k, nic] of node.hostInterfaces.entries()) {
      const address = k === 0 ? node.address : `192.168.${100 + k}.${11 + index}`;
      yield* netlink.host.addAddress({ link: nic, cidr: `${address}/24` }).pipe(Effect.ignore);
    }
    yield* kube.create(NodeResource, {
      metadata: { name: node.name, labels: { ...node.labels, "kubernetes.io/hostname": node.name } },
      status: {
        addresses: [{ type: "InternalIP", address: node.address }],
        conditions: [{ type: "Ready", status: "True" }],
      },
    }).pipe(Effect.ignore);
    const proc = new MemoryProcess();
    registerSimulatedDelegates(proc, netlink, { binDir, nodeIndex: index });
    const services = Layer.mergeAll(
      Layer.succeed(Kube, kube),
      Layer.succeed(Netlink, netlink),
      Layer.succeed(Process, proc.service),
      layerMemoryFs(fs),
    );
    const agent = yield* makeNetwatcher({ nodeName: node.name, reconcilePeriod: "1 hour" }).pipe(
      Effect.provide(services),
      Effect.orDie,
    );
    const cni = yield* makeHandler({
      nodeName: node.name,
      socketPath: `/run/danm/${node.name}.sock`,
      stateDir: `/run/danm/${node.name}/sandboxes`,
      delegatePath: binDir,
      attachTimeoutMs: 10_000,
      podDevices: simDevicePlugin(node, kube),
    }).pipe(Effect.provide(services));
    // `fakeipam` in CNI_PATH: like the real thin client, it asks this node's daemon for the addresses.
    proc.register(`${binDir}/fakeipam`, (inv) =>
      Effect.map(
        cni.handle({ program: "fakeipam", env: inv.env, stdin: new TextDecoder().decode(inv.stdin) }),
        (r) => ({ code: r.code, stdout: r.stdout, stderr: r.stderr }),
      ));
    const ctx: NodeCtx = { node, index, kernel, netlink, handle: cni.handle, reconcile: agent.reconcileNow };
    return ctx;
  });

/** The node's VLAN and VXLAN host interfaces, as the report lists them. */
export const hostInterfaces = (c: NodeCtx): Effect.Effect<SimOutcome["nodes"][number]> =>
  Effect.gen(function* () {
    const links = yield* c.netlink.host.links().pipe(Effect.orDie);
    const byIndex = new Map(links.map((l) => [l.index, l.name]));
    return {
      name: c.node.name,
      hostInterfaces: links
        .filter((l) => l.kind === "vlan" || l.kind === "vxlan")
        .sort((a, b) => a.name.localeCompare(b.name, "en"))
        .map((l) => ({
          name: l.name,
          kind: l.kind,
          ...(l.vlan ? { vlan: l.vlan.id } : {}),
          ...(l.vxlan ? { vni: l.vxlan.vni } : {}),
          ...(l.parent !== undefined && byIndex.has(l.parent) ? { parent: byIndex.get(l.parent)! } : {}),
          ...(l.vxlan?.dev !== undefined && byIndex.has(l.vxlan.dev) ? { parent: byIndex.get(l.vxlan.dev)! } : {}),
          mtu: l.mtu,
        })),
    };
  });
