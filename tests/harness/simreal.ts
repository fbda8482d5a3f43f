// The real clusters `deno task sim --real` runs on (adapters/sim/real.ts composes the run and its report; this is
// the part that needs a repository checkout): a real etcd + kube-apiserver, the webhook, svcwatcher, and per node
// a network namespace with the node agent (netwatcher + CNI daemon) and a fake kubelet that creates a netns per pod
// and calls the danm CNI through the CNI protocol exactly as a runtime would (tests/harness/stack.ts). Needs root;
// it runs in a private network and mount namespace so nothing it creates outlives it.
//
// `--kubelet` runs it on real nodes instead (tests/harness/node/cluster.ts): kubelet + containerd + kube-proxy per
// node, the real scheduler and controllers, danm installed with `kubectl apply -k` from its images; the scenario's
// containers run the pause image (there is no registry), and `-o json` gives each node's kubelet and runtime version.
//
// The nodes' NICs are veths: `ens3` (the underlay, addressed) and `ens4` (spare, for macvlan). The host kernel has
// no ipvlan or 802.1Q vlan, so such networks fail here (the kernel test tier covers them in a QEMU guest); the
// bundled k8s/examples/real.yaml uses macvlan, bridge and VXLAN.
import type { RealHarness, RealTarget, TargetOptions } from "../../adapters/sim/real.ts";
import { ensureK8sBinaries, startApiServer } from "./apiserver.ts";
import { ensureCniPlugins } from "./cniplugins.ts";
import { isolated } from "./isolate.ts";
import { prepareNodeBinaries } from "./node/binaries.ts";
import { onRealNodes } from "./node/sim.ts";
import { ensureAptPackages } from "./prereq.ts";
import { repoRoot } from "./proc.ts";
import { type ApplyResult, type Stack, startStack } from "./stack.ts";

const isolatedEnv = "DANM_SIM_ISOLATED";

/** Loaded by adapters/sim/real.ts (by path, so that nothing shipped imports tests/). */
export const realHarness: RealHarness = {
  isolate: async (kubelet, log) => {
    if (!Deno.env.get(isolatedEnv)) {
      await ensureAptPackages(["ip", "openssl", "unshare", "nsenter", "ping"], log);
      log(`kube-apiserver + etcd in ${await ensureK8sBinaries()}`);
      log(`reference CNI plugins in ${await ensureCniPlugins()}`);
      if (kubelet) await prepareNodeBinaries(log);
    }
    return await isolated(isolatedEnv, `${repoRoot}/cmd/sim.ts`, Deno.args);
  },
  start: (o, kubelet) => kubelet ? onRealNodes(o) : onFakeKubelets(o),
};

/** The fake kubelets of tests/harness/stack.ts on a real apiserver. */
async function onFakeKubelets(o: TargetOptions): Promise<RealTarget> {
  o.log("starting etcd + kube-apiserver");
  const api = await startApiServer();
  let stack: Stack;
  try {
    stack = await startStack(api, {
      nodes: o.nodes,
      cniConfigs: o.cniConfigs,
      nodeBridges: o.bridges,
      onLog: () => {},
    });
  } catch (e) {
    await api.stop();
    throw e;
  }
  const warned: Array<ApplyResult["warned"][number]> = [];
  return {
    nodeNames: stack.nodes.map((n) => n.name),
    apply: async (objects) => {
      const applied = await stack.apply(objects);
      warned.push(...applied.warned);
      return applied.refused;
    },
    warned: () => warned,
    settle: async (timeoutMs) => {
      const running = await stack.waitForPods({ timeoutMs }).catch((e) => {
        o.log(`not every pod came up: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
        return [];
      });
      const names = new Set(running.map((p) => `${p.metadata.namespace}/${p.metadata.name}`));
      return stack.pods().map((p) => {
        const sb = stack.sandbox(p.namespace, p.name);
        return { ...p, node: sb?.node ?? "", running: names.has(`${p.namespace}/${p.name}`) && sb !== undefined };
      });
    },
    podLinks: (namespace, name) => stack.podLinks(namespace, name),
    ping: (namespace, name, address) => stack.ping(namespace, name, address, 2),
    nodes: () =>
      Promise.all(stack.nodes.map(async (n) => ({ name: n.name, hostLinks: await stack.nodeLinks(n.name) }))),
    kubeRun: (e) => stack.kubeRun(e),
    teardown: async () => {
      await stack.teardown();
    },
    stop: async () => {
      await stack.stop();
      await api.stop();
      await Deno.remove(api.dir, { recursive: true }).catch(() => {});
    },
  };
}
