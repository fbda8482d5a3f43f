// Three "nodes" for netwatcher on the real apiserver: a network namespace per node whose `eth1` is a veth into one
// shared bridge (multicast snooping off, so VXLAN multicast floods like a plain switch), a Node object per node with
// that underlay as InternalIP, and a netwatcher agent per node in this process (live Kube + live Netlink).
// Everything is labelled with a per-setup run id; the agents only serve networks carrying it.
import * as k8s from "@kubernetes/client-node";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Effect, Exit, Layer, Schema, Scope } from "effect";
import { EventResource, NodeResource } from "../../../core/api/k8s.ts";
import { make, type NetwatcherConfig, type NetwatcherService } from "../../../core/netwatcher/agent.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { Netlink, NetnsRef } from "../../../core/ports/netlink.ts";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import * as LiveNetlink from "../../../adapters/netlink/live.ts";
import { type TestCluster, useCluster } from "../../harness/cluster.ts";
import { type NetnsScope, netnsScope } from "../../harness/netns.ts";
import { kubeconfigYaml } from "../../harness/apiserver.ts";
import { repoRoot, run as runCmd } from "../../harness/proc.ts";
import { installDanmCrds } from "../api/danm_crds.ts";

export const RunLabel = "danm.test/netwatcher";

export interface Nodes {
  readonly run: string;
  /** `${RunLabel}=${run}`. */
  readonly selector: string;
  readonly cluster: TestCluster;
  readonly kube: KubeService;
  readonly scope: NetnsScope;
  /** Netns names, one per node. */
  readonly ns: ReadonlyArray<string>;
  readonly nodeNames: ReadonlyArray<string>;
  readonly underlay: ReadonlyArray<string>;
  readonly agents: ReadonlyArray<NetwatcherService>;
  /** Runs an Effect needing Kube against the live layer. */
  readonly kubeRun: <A, E>(e: Effect.Effect<A, E, Kube>) => Promise<A>;
  readonly dispose: () => Promise<void>;
}

const RbacManifest = Schema.Array(Schema.Struct({
  kind: Schema.String,
  rules: Schema.optionalKey(Schema.Array(Schema.Struct({
    apiGroups: Schema.Array(Schema.String),
    resources: Schema.Array(Schema.String),
    verbs: Schema.Array(Schema.String),
  }))),
}));

/**
 * A kubeconfig for a user holding exactly the ClusterRole of k8s/netwatcher/rbac.yaml (bound under a unique name),
 * so the agents prove the shipped RBAC is enough. Returns the kubeconfig path and a cleanup.
 */
async function restrictedKubeconfig(cluster: TestCluster, run: string) {
  const docs = Schema.decodeUnknownSync(RbacManifest)(
    yaml.loadAll(await Deno.readTextFile(`${repoRoot}/k8s/netwatcher/rbac.yaml`)),
  );
  const rules = docs.find((d) => d.kind === "ClusterRole")?.rules ?? [];
  const name = `danm-netwatcher-test-${run}`;
  const user = `system:serviceaccount:kube-system:${name}`;
  const rbac = cluster.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
  const cleanup = async () => {
    await rbac.deleteClusterRoleBinding({ name }).catch(() => {});
    await rbac.deleteClusterRole({ name }).catch(() => {});
  };
  await rbac.createClusterRole({
    body: {
      metadata: { name },
      rules: rules.map((r) => ({ apiGroups: [...r.apiGroups], resources: [...r.resources], verbs: [...r.verbs] })),
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: user }],
    },
  });
  const cert = await cluster.pki.client(name, user, ["system:serviceaccounts"]);
  const path = `${cluster.pki.dir}/${name}.kubeconfig`;
  await Deno.writeTextFile(path, kubeconfigYaml(cluster.url, cluster.pki.ca.certPem, cert));
  return { path, cleanup };
}

export async function threeNodes(
  opts: {
    config?: Partial<NetwatcherConfig>;
    before?: Effect.Effect<unknown, unknown, Kube>;
    /** Run the agents with the shipped RBAC only (k8s/netwatcher/rbac.yaml) instead of as admin. */
    restricted?: boolean;
  } = {},
): Promise<Nodes> {
  const cluster = await useCluster();
  const run = crypto.randomUUID().slice(0, 6);
  const selector = `${RunLabel}=${run}`;
  const scope = netnsScope();
  const effectScope = Effect.runSync(Scope.make());
  const nodeNames = [0, 1, 2].map((i) => `nw-${run}-${i}`);
  const underlay = [0, 1, 2].map((i) => `10.77.0.${i + 1}`);
  let kube: KubeService | undefined;
  let rbacCleanup: (() => Promise<void>) | undefined;
  const dispose = async () => {
    await Effect.runPromise(Scope.close(effectScope, Exit.void)).catch(() => {});
    await rbacCleanup?.();
    const k = await Effect.runPromise(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(
        Effect.flatMap((k) =>
          Effect.gen(function* () {
            yield* Effect.forEach(nodeNames, (n) => Effect.ignore(k.delete(NodeResource, n)), { discard: true });
            // The agents' Events about this run's objects (every test object name carries the run id).
            const events = yield* k.list(EventResource, { namespace: "default" });
            const ours = events.items.filter((e) => (e.involvedObject.name ?? "").includes(run));
            yield* Effect.forEach(
              ours,
              (e) => Effect.ignore(k.delete(EventResource, e.metadata.name ?? "", { namespace: "default" })),
              { discard: true },
            );
          })
        ),
        Effect.scoped,
      ),
    ).catch((e) => e);
    if (k instanceof Error) console.error(`cleanup of Nodes failed: ${k.message}`);
    await scope.dispose();
    await cluster.release();
  };
  try {
    await installDanmCrds(cluster.kubeConfig);
    const bridge = `nwbr${run}`;
    await scope.bridge(bridge);
    await scope.ip(undefined, "link", "set", bridge, "type", "bridge", "mcast_snooping", "0");
    const ns: string[] = [];
    for (const i of [0, 1, 2]) {
      const name = await scope.netns(`nw${i}`);
      const port = `nw${run}p${i}`;
      await scope.veth({ name: port }, { name: "eth1", ns: name });
      await scope.ip(undefined, "link", "set", port, "master", bridge);
      await scope.ip(name, "addr", "add", `${underlay[i]}/24`, "dev", "eth1");
      ns.push(name);
    }
    kube = await Effect.runPromise(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Scope.provide(effectScope)),
    );
    const k = kube;
    const kubeRun = <A, E>(e: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provideService(e, Kube, k));
    for (const [i, name] of nodeNames.entries()) {
      await kubeRun(Effect.gen(function* () {
        yield* k.create(NodeResource, { metadata: { name, labels: { [RunLabel]: run } } });
        // Node status is a subresource: the addresses go in with a status patch, as kubelet's updates do.
        yield* k.patch(NodeResource, name, {
          type: "merge",
          patch: { status: { addresses: [{ type: "InternalIP", address: underlay[i] }] } },
        }, { subresource: "status" });
      }));
    }
    if (opts.before) await kubeRun(opts.before);
    const netlink = await Effect.runPromise(LiveNetlink.make().pipe(Scope.provide(effectScope)));
    let agentKube = k;
    if (opts.restricted) {
      const restricted = await restrictedKubeconfig(cluster, run);
      rbacCleanup = restricted.cleanup;
      agentKube = await Effect.runPromise(
        makeLiveKube({ config: { _tag: "Kubeconfig", path: restricted.path } }).pipe(Scope.provide(effectScope)),
      );
    }
    const layers = Layer.mergeAll(Layer.succeed(Kube, agentKube), Layer.succeed(Netlink, netlink));
    const agents: NetwatcherService[] = [];
    for (const [i, name] of ns.entries()) {
      agents.push(
        await Effect.runPromise(
          make({
            nodeName: nodeNames[i],
            netns: NetnsRef.path(scope.path(name)),
            reconcilePeriod: "1 second",
            peerSelector: selector,
            networkSelector: selector,
            ...opts.config,
          }).pipe(Effect.provide(layers), Scope.provide(effectScope)),
        ),
      );
    }
    return { run, selector, cluster, kube: k, scope, ns, nodeNames, underlay, agents, kubeRun, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

// `ip -d -json link show` as far as the tests look at it.
const IpLink = Schema.Struct({
  ifindex: Schema.Number,
  ifname: Schema.String,
  mtu: Schema.Number,
  flags: Schema.Array(Schema.String),
  ifalias: Schema.optionalKey(Schema.String),
  linkinfo: Schema.optionalKey(Schema.Struct({
    info_kind: Schema.String,
    info_data: Schema.optionalKey(Schema.Struct({
      id: Schema.optionalKey(Schema.Number),
      group: Schema.optionalKey(Schema.String),
      remote: Schema.optionalKey(Schema.String),
      local: Schema.optionalKey(Schema.String),
      link: Schema.optionalKey(Schema.String),
      port: Schema.optionalKey(Schema.Number),
      learning: Schema.optionalKey(Schema.Boolean),
      l2miss: Schema.optionalKey(Schema.Boolean),
      l3miss: Schema.optionalKey(Schema.Boolean),
    })),
  })),
});
export type IpLink = typeof IpLink.Type;
const decodeLinks = Schema.decodeUnknownSync(Schema.Array(IpLink));

/** The link as iproute2 sees it, or undefined when absent. */
export async function ipLink(scope: NetnsScope, ns: string, name: string): Promise<IpLink | undefined> {
  const all = decodeLinks(await scope.ipJson(ns, "-d", "link", "show"));
  return all.find((l) => l.ifname === name);
}

const FdbEntry = Schema.Struct({ mac: Schema.String, dst: Schema.optionalKey(Schema.String) });
const decodeFdb = Schema.decodeUnknownSync(Schema.Array(FdbEntry));

/** Remote VTEPs of the all-zero (flood) FDB entries of a VXLAN device, sorted. */
export async function floodList(ns: string, dev: string): Promise<string[]> {
  const out = await runCmd(["ip", "netns", "exec", ns, "bridge", "-json", "fdb", "show", "dev", dev]);
  return decodeFdb(out.trim() === "" ? [] : JSON.parse(out))
    .filter((e) => e.mac === "00:00:00:00:00:00" && e.dst !== undefined)
    .map((e) => e.dst!)
    .sort();
}
