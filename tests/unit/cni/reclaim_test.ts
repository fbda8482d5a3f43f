// The node agent's clean-up of sandboxes whose pod is gone without a DEL (core/cni/reclaim.ts), on the in-memory
// layers: a lost DEL on this node, and DanmEps left by a node that was removed for good.
import { Effect } from "effect";
import { type DanmEp, DanmEpResource } from "../../../core/api/danm.ts";
import { ipBlockResource } from "../../../core/api/ipam.ts";
import { NodeResource, PodResource } from "../../../core/api/k8s.ts";
import { EpLabels } from "../../../core/cni/endpoints.ts";
import { removeRecord } from "../../../core/cni/state.ts";
import { layerMemoryFs } from "../../../adapters/fs/memory.ts";
import { NetnsRef } from "../../../core/ports/netlink.ts";
import { assertEquals } from "../../harness/assert.ts";
import {
  cniEnv,
  createDelegatedNetwork,
  createNetwork,
  createPod,
  danmConf,
  makeWorld,
  sandbox,
  sleep,
  type World,
} from "./fixture.ts";

const endpoints = async (w: World) =>
  (await Effect.runPromise(w.kube.list(DanmEpResource, { namespace: "default" }))).items;
const reservations = async (w: World) =>
  (await Effect.runPromise(w.kube.list(ipBlockResource))).items.flatMap((b) => Object.values(b.spec.reservations));
const links = (w: World, netns: string) =>
  w.run(
    Effect.scoped(
      Effect.flatMap(
        w.netlink.netns(NetnsRef.path(netns)),
        (p) => Effect.map(p.links(), (ls) => ls.map((l) => l.name)),
      ),
    ),
  );
const records = (w: World) => Object.keys(w.fs.files()).filter((f) => f.startsWith("/run/danm/sandboxes/"));

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const ipvlan = (w: World) =>
  createNetwork(w, "DanmNet", "int", {
    NetworkID: "int",
    NetworkType: "ipvlan",
    Options: { host_device: "ens4", cidr: "10.10.0.0/24" },
  });
const onInt = { "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }]) };

Deno.test("reclaim: a pod deleted without a DEL loses its sandbox (interface, DanmEp, reservation, record); a live pod keeps its", async () => {
  const w = await makeWorld({ reclaimPeriodMs: 50, reclaimGraceSeconds: 0 });
  try {
    await ipvlan(w);
    const keep = await createPod(w, "keep", onInt), lose = await createPod(w, "lose", onInt);
    const a = sandbox(w), b = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", a, keep), danmConf())).code, 0);
    assertEquals((await w.call("danm", cniEnv("ADD", b, lose), danmConf())).code, 0);
    // The runtime lost the DEL: the pod object goes, danm hears nothing.
    await Effect.runPromise(w.kube.delete(PodResource, "lose", { namespace: "default", gracePeriodSeconds: 0 }));
    await until("the lost pod's DanmEp to go", async () => (await endpoints(w)).length === 1);
    assertEquals((await endpoints(w)).map((e) => e.spec.Pod), ["keep"]);
    // Where no agent is left, the Kubernetes garbage collector removes them: the pod owns its DanmEps.
    assertEquals((await endpoints(w))[0].metadata.ownerReferences, [
      { apiVersion: "v1", kind: "Pod", name: "keep", uid: keep.metadata.uid! },
    ]);
    await until("its reservation to go", async () => (await reservations(w)).length === 1);
    assertEquals((await reservations(w)).map((r) => r.sandbox), [a.containerId]);
    assertEquals(await links(w, b.netns), ["lo"], "its interface is deleted");
    assertEquals(await links(w, a.netns), ["lo", "eth0"]);
    assertEquals(records(w), [`/run/danm/sandboxes/${a.containerId}.json`]);
  } finally {
    await w.dispose();
  }
});

Deno.test("reclaim: a pod recreated under the same name (new UID) does not keep its predecessor's sandbox alive", async () => {
  const w = await makeWorld({ reclaimPeriodMs: 50, reclaimGraceSeconds: 0 });
  try {
    await ipvlan(w);
    const first = await createPod(w, "sts-0", onInt);
    const sb = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", sb, first), danmConf())).code, 0);
    await Effect.runPromise(w.kube.delete(PodResource, "sts-0", { namespace: "default", gracePeriodSeconds: 0 }));
    await createPod(w, "sts-0", onInt);
    await until("the old sandbox's DanmEp to go", async () => (await endpoints(w)).length === 0);
    assertEquals(await reservations(w), []);
  } finally {
    await w.dispose();
  }
});

Deno.test("reclaim: DanmEps of a removed node whose pod is gone are deleted; a live node's or a live pod's stay", async () => {
  const w = await makeWorld({ reclaimPeriodMs: 50, reclaimGraceSeconds: 0 });
  try {
    await Effect.runPromise(w.kube.create(NodeResource, { metadata: { name: "other" } }));
    const alive = await createPod(w, "alive");
    const ep = (name: string, node: string, pod: string, uid: string): DanmEp => ({
      metadata: { name, namespace: "default", labels: { [EpLabels.node]: node } },
      spec: {
        NetworkName: "int",
        EndpointID: name,
        Pod: pod,
        PodUID: uid,
        CID: `cid-${name}`,
        Host: node,
        Interface: { Name: "eth0", Address: "10.10.0.9/24" },
      },
    });
    for (
      const e of [
        ep("removed-gone", "removed", "gone", "uid-gone"),
        ep("removed-alive", "removed", "alive", alive.metadata.uid!),
        ep("other-gone", "other", "gone", "uid-gone"),
      ]
    ) await Effect.runPromise(w.kube.create(DanmEpResource, e));
    // The removed node is known from what its pods still hold in danm's IPAM.
    await Effect.runPromise(w.kube.create(ipBlockResource, {
      metadata: { name: "uid-int-4-0" },
      spec: {
        network: { kind: "DanmNet", namespace: "default", name: "int", uid: "uid-int" },
        family: "IPv4",
        cidr: "10.10.0.0/26",
        reservations: {
          "9": {
            pod: "default/gone",
            podUid: "uid-gone",
            sandbox: "cid-removed-gone",
            iface: "eth0",
            node: "removed",
            since: new Date().toISOString(),
          },
        },
      },
    }));
    await until("the removed node's orphan to go", async () => (await endpoints(w)).length === 2);
    await sleep(200); // a few more rounds: nothing else goes
    assertEquals((await endpoints(w)).map((e) => e.metadata.name).sort(), ["other-gone", "removed-alive"]);
  } finally {
    await w.dispose();
  }
});

/** The sandbox's record is gone (a tmpfs emptied) and so is the pod, without a DEL: only its DanmEps tell; reclaim. */
const loseRecordAndPod = async (w: World, containerId: string, pod: string) => {
  await Effect.runPromise(Effect.provide(removeRecord("/run/danm/sandboxes", containerId), layerMemoryFs(w.fs)));
  await Effect.runPromise(w.kube.delete(PodResource, pod, { namespace: "default", gracePeriodSeconds: 0 }));
  await until("its DanmEp to go", async () => (await endpoints(w)).length === 0);
};

Deno.test("reclaim: a sandbox known only from its DanmEps (record lost) runs its delegate's DEL from the node's plugin directory", async () => {
  const w = await makeWorld({ reclaimPeriodMs: 50, reclaimGraceSeconds: 0 });
  try {
    await createDelegatedNetwork(w);
    const pod = await createPod(w, "lost", {
      "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", sb, pod), danmConf())).code, 0);
    await loseRecordAndPod(w, sb.containerId, "lost");
    await until(
      "the delegate's DEL",
      () =>
        Promise.resolve(
          w.process.calls.some((i) => i.env.CNI_COMMAND === "DEL" && i.env.CNI_CONTAINERID === sb.containerId),
        ),
    );
    assertEquals(await links(w, sb.netns), ["lo"]);
    await sleep(200);
    assertEquals(records(w), [], "nothing left for a retry");
  } finally {
    await w.dispose();
  }
});

Deno.test("reclaim: a built-in macvlan known only from its DanmEps (record lost) is deleted, no process started", async () => {
  const w = await makeWorld({ reclaimPeriodMs: 50, reclaimGraceSeconds: 0 });
  try {
    await createNetwork(w, "DanmNet", "mv", {
      NetworkID: "mvnet",
      NetworkType: "macvlan",
      Options: { host_device: "ens5", cidr: "10.30.0.0/24" },
    });
    const pod = await createPod(w, "lost", {
      "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]),
    });
    const sb = sandbox(w);
    assertEquals((await w.call("danm", cniEnv("ADD", sb, pod), danmConf())).code, 0);
    await loseRecordAndPod(w, sb.containerId, "lost");
    await until("its link to go", async () => (await links(w, sb.netns)).length === 1);
    assertEquals(await links(w, sb.netns), ["lo"]);
    assertEquals(w.process.calls, []);
    await sleep(200);
    assertEquals(records(w), [], "nothing left for a retry");
  } finally {
    await w.dispose();
  }
});
