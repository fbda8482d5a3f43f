// VLAN host interfaces on a real 802.1Q kernel (the QEMU guest; the host kernel has no vlan module), driven by a real
// apiserver: the kernel tier's, on the host, reached through QEMU's user-mode network. The agent runs on the live
// Kube and Netlink layers, managing a network namespace whose `eth1` / `tenant-bond` are dummy links. iproute2 is
// the independent observer.
import { Effect, Exit, Layer, Schema, Scope } from "effect";
import { ClusterNetworkResource } from "../../../core/api/danm.ts";
import { NetworkAttachmentDefinitionResource as NADs } from "../../../core/api/k8s.ts";
import { make, type NetwatcherService } from "../../../core/netwatcher/agent.ts";
import { OriginalMasterAnnotation } from "../../../core/netwatcher/nad.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { Netlink, NetnsRef } from "../../../core/ports/netlink.ts";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import * as LiveNetlink from "../../../adapters/netlink/live.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { eventually } from "../../harness/eventually.ts";
import { type NetnsScope, netnsScope } from "../../harness/netns.ts";
import { useCluster } from "../../harness/cluster.ts";
import { installDanmCrds } from "../../integration/api/danm_crds.ts";
import { ensureCrd, nadCrd } from "../../integration/kube/crds.ts";

const IpLink = Schema.Struct({
  ifindex: Schema.Number,
  ifname: Schema.String,
  mtu: Schema.Number,
  flags: Schema.Array(Schema.String),
  link: Schema.optionalKey(Schema.String),
  ifalias: Schema.optionalKey(Schema.String),
  linkinfo: Schema.optionalKey(Schema.Struct({
    info_kind: Schema.String,
    info_data: Schema.optionalKey(Schema.Struct({ id: Schema.optionalKey(Schema.Number) })),
  })),
});
const decodeLinks = Schema.decodeUnknownSync(Schema.Array(IpLink));
const links = async (scope: NetnsScope, ns: string) => decodeLinks(await scope.ipJson(ns, "-d", "link", "show"));
/** A QEMU guest answers slowly (one emulated CPU). */
const guestWaitMs = 60_000;

interface Env {
  readonly scope: NetnsScope;
  readonly ns: string;
  readonly kube: KubeService;
  readonly agent: NetwatcherService;
  readonly run: <A, E>(e: Effect.Effect<A, E>) => Promise<A>;
  readonly dispose: () => Promise<void>;
}

async function setup(hostDevice: string): Promise<Env> {
  const scope = netnsScope();
  const effectScope = Effect.runSync(Scope.make());
  const dispose = async () => {
    await Effect.runPromise(Scope.close(effectScope, Exit.void));
    await scope.dispose();
  };
  try {
    const ns = await scope.netns("nwk");
    await scope.ip(ns, "link", "add", hostDevice, "type", "dummy");
    // Left down on purpose: netwatcher brings the host device up first (DANM #44).
    const cluster = await useCluster();
    await installDanmCrds(cluster.kubeConfig);
    const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
    const kube = await run(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Scope.provide(effectScope)),
    );
    await run(ensureCrd(nadCrd).pipe(Effect.provideService(Kube, kube)));
    const netlink = await run(LiveNetlink.make().pipe(Scope.provide(effectScope)));
    const agent = await run(
      make({ nodeName: "guest", netns: NetnsRef.path(scope.path(ns)), reconcilePeriod: "500 millis" }).pipe(
        Effect.provide(Layer.mergeAll(Layer.succeed(Kube, kube), Layer.succeed(Netlink, netlink))),
        Scope.provide(effectScope),
      ),
    );
    return { scope, ns, kube, agent, run, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

Deno.test("netwatcher (guest, real apiserver): a VLAN host interface is created, repaired, changed 500 → 501 and deleted", async () => {
  const env = await setup("eth1");
  const { scope, ns, kube, run } = env;
  try {
    await run(kube.create(ClusterNetworkResource, {
      metadata: { name: "external" },
      spec: { NetworkID: "external", NetworkType: "ipvlan", Options: { host_device: "eth1", vlan: 500, mtu: 1400 } },
    }));
    const v500 = await eventually("external.500", async () => {
      const l = (await links(scope, ns)).find((x) => x.ifname === "external.500");
      return l && l.flags.includes("UP") ? l : undefined;
    }, guestWaitMs);
    assertEquals(v500.linkinfo?.info_kind, "vlan");
    assertEquals(v500.linkinfo?.info_data?.id, 500);
    assertEquals(v500.link, "eth1");
    assertEquals(v500.mtu, 1400);
    assertEquals(v500.ifalias, "danm:netwatcher");
    assert((await links(scope, ns)).find((x) => x.ifname === "eth1")?.flags.includes("UP"), "host device brought up");

    // Damage: the interface deleted by hand (DANM left it gone until netwatcher restarted, #257) comes back.
    await scope.ip(ns, "link", "del", "external.500");
    const repaired = await eventually("external.500 re-created", async () => {
      const l = (await links(scope, ns)).find((x) => x.ifname === "external.500");
      return l && l.flags.includes("UP") ? l : undefined;
    }, guestWaitMs);
    assert(repaired.ifindex !== v500.ifindex, "a new interface");
    assertEquals([repaired.linkinfo?.info_data?.id, repaired.link, repaired.mtu], [500, "eth1", 1400]);

    // No pods attached: the change is applied by replacing the interface.
    const stored = await run(kube.get(ClusterNetworkResource, "external"));
    await run(kube.update(ClusterNetworkResource, {
      ...stored,
      spec: { ...stored.spec, Options: { ...stored.spec.Options, vlan: 501 } },
    }));
    const v501 = await eventually("external.501 replacing external.500", async () => {
      const all = await links(scope, ns);
      const l = all.find((x) => x.ifname === "external.501");
      return l && l.flags.includes("UP") && !all.some((x) => x.ifname === "external.500") ? l : undefined;
    }, guestWaitMs);
    assertEquals(v501.linkinfo?.info_data?.id, 501);
    assertEquals(v501.link, "eth1");

    await run(kube.delete(ClusterNetworkResource, "external"));
    await eventually(
      "external.501 gone",
      async () => (await links(scope, ns)).some((x) => x.ifname.startsWith("external.")) ? undefined : true,
      guestWaitMs,
    );
    assert((await links(scope, ns)).some((x) => x.ifname === "eth1"), "the host device itself is left alone");
  } finally {
    await env.dispose();
  }
});

Deno.test("netwatcher (guest, real apiserver): DANM's NAD example — vlantest.500@tenant-bond exists and stays, master rewritten", async () => {
  const env = await setup("tenant-bond");
  const { scope, ns, kube, run } = env;
  try {
    const config = { cniVersion: "0.3.1", name: "vlantest", type: "ipvlan", master: "tenant-bond", vlan: 500 };
    await run(kube.create(NADs, {
      metadata: { name: "vlantest", namespace: "default" },
      spec: { config: JSON.stringify(config) },
    }));
    const first = await eventually("vlantest.500", async () => {
      const l = (await links(scope, ns)).find((x) => x.ifname === "vlantest.500");
      return l && l.flags.includes("UP") ? l : undefined;
    }, guestWaitMs);
    assertEquals([first.link, first.linkinfo?.info_data?.id], ["tenant-bond", 500]);
    const nad = await eventually("master rewritten", async () => {
      const got = await run(kube.get(NADs, "vlantest", { namespace: "default" }));
      return JSON.parse(got.spec?.config ?? "{}").master === "vlantest.500" ? got : undefined;
    }, guestWaitMs);
    assertEquals(nad.metadata.annotations?.[OriginalMasterAnnotation], "tenant-bond");
    // Several reconcile periods later the very same link is still there.
    await new Promise((r) => setTimeout(r, 3000));
    assertEquals((await links(scope, ns)).find((x) => x.ifname === "vlantest.500")?.ifindex, first.ifindex);
  } finally {
    await env.dispose();
  }
});
