// A simulated pod's life as far as danm sees it: admission on the API, then what a kubelet and its runtime do — a
// sandbox netns on the node and a CNI ADD exactly as a runtime sends it — and the Pod's status once it answers;
// then what the pod's namespace holds, for the report.
import { Effect, Schema } from "effect";
import { type DanmEp, DanmEpResource } from "../../core/api/danm.ts";
import { Pod, PodResource } from "../../core/api/k8s.ts";
import { EpLabels, labelValue } from "../../core/cni/endpoints.ts";
import type { KubeService } from "../../core/ports/kube.ts";
import { NetnsRef } from "../../core/ports/netlink.ts";
import type { ExpandedPod, JsonObject } from "../../core/sim/scenario.ts";
import type { SimPod, SimPodInterface } from "../../core/sim/report.ts";
import { reason, type SimRecord } from "./cluster.ts";
import { binDir, cniDir, type NodeCtx } from "./nodes.ts";

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** One pod through admission and its node's CNI ADD, added to `pods`; true when it came up with its interfaces. */
export const simulatePod = (
  kube: KubeService,
  nodes: ReadonlyMap<string, NodeCtx>,
  p: ExpandedPod,
  record: SimRecord,
  pods: SimPod[],
) =>
  Effect.gen(function* () {
    const meta = isObject(p.pod.metadata) ? p.pod.metadata : {};
    const name = String(meta.name), namespace = String(meta.namespace ?? "default");
    const nodeName = String((p.pod.spec as JsonObject).nodeName);
    const decoded = yield* Effect.result(Schema.decodeUnknownEffect(Pod)(p.pod));
    if (decoded._tag === "Failure") {
      record.errors.push(`${p.source.file}: Pod ${namespace}/${name}: ${decoded.failure.message}`);
      return false;
    }
    const created = yield* Effect.result(kube.create(PodResource, decoded.success));
    if (created._tag === "Failure") {
      record.rejected.push({ kind: "Pod", namespace, name, reason: reason(created.failure), source: p.source.file });
      return false;
    }
    const ctx = nodes.get(nodeName);
    if (!ctx) {
      pods.push({
        namespace,
        name,
        node: nodeName,
        owner: p.owner,
        status: "Failed",
        error: `no node ${nodeName} in the scenario`,
        interfaces: [],
      });
      return false;
    }
    const sandbox = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0"))
      .join("");
    const netnsPath = yield* ctx.netlink.createNetns(`${namespace}-${name}`.slice(0, 60)).pipe(Effect.orDie);
    const response = yield* ctx.handle({
      program: "danm",
      env: {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: sandbox,
        CNI_NETNS: netnsPath,
        CNI_IFNAME: "eth0",
        CNI_PATH: binDir,
        CNI_ARGS:
          `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${sandbox};K8S_POD_UID=${created.success.metadata.uid}`,
      },
      stdin: JSON.stringify({ cniVersion: "1.0.0", name: "danm", type: "danm", cniDir }),
    });
    if (response.code !== 0) {
      let msg = response.stdout;
      try {
        const e = JSON.parse(response.stdout) as { msg?: string; details?: string };
        msg = e.details ? `${e.msg}: ${e.details}` : e.msg ?? msg;
      } catch { /* keep the raw text */ }
      pods.push({ namespace, name, node: nodeName, owner: p.owner, status: "Failed", error: msg, interfaces: [] });
      return false;
    }
    const result = JSON.parse(response.stdout) as { ips?: Array<{ address: string }> };
    const ips = (result.ips ?? []).map((i) => i.address.split("/")[0]);
    const now = new Date().toISOString();
    yield* kube.patch(PodResource, name, {
      type: "merge",
      patch: {
        status: {
          phase: "Running",
          ...(ips.length ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}),
          conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((type) => ({
            type,
            status: "True",
            lastTransitionTime: now,
          })),
        },
      },
    }, { namespace, subresource: "status" }).pipe(Effect.ignore);
    pods.push({
      namespace,
      name,
      node: nodeName,
      owner: p.owner,
      status: "Running",
      interfaces: yield* podInterfaces(kube, ctx, NetnsRef.path(netnsPath), created.success),
    });
    return true;
  });

/** What the pod's namespace holds, labelled with the network each interface belongs to (from its DanmEps). */
const podInterfaces = (kube: KubeService, ctx: NodeCtx, ref: NetnsRef, pod: Pod) =>
  Effect.scoped(Effect.gen(function* () {
    const eps = (yield* kube.list(DanmEpResource, {
      namespace: pod.metadata.namespace ?? "default",
      labelSelector: `${EpLabels.podUid}=${labelValue(pod.metadata.uid ?? "")}`,
    }).pipe(Effect.orDie)).items.filter((e: DanmEp) => e.spec.Pod === pod.metadata.name);
    const ns = yield* ctx.netlink.netns(ref).pipe(Effect.orDie);
    const links = (yield* ns.links().pipe(Effect.orDie)).filter((l) => l.kind !== "loopback");
    const addrs = yield* ns.addresses({}).pipe(Effect.orDie);
    const routes = yield* ns.routes({ table: "all" }).pipe(Effect.orDie);
    const rules = yield* ns.rules().pipe(Effect.orDie);
    const out: SimPodInterface[] = [];
    for (const l of links.sort((a, b) => a.name.localeCompare(b.name, "en"))) {
      const ep = eps.find((e) => e.spec.Interface.Name === l.name);
      const ips = addrs.filter((a) => a.link === l.index && a.scope !== "link").map((a) => a.cidr);
      const own = routes.filter((r) => r.link === l.index && r.type === "unicast" && r.table !== 255 && r.gateway)
        .map((r) => `${r.dst} via ${r.gateway}${r.table !== 254 ? ` table ${r.table}` : ""}`);
      // Policy rules of the tables this interface's routes live in (danm adds one per address for proutes).
      const tables = new Set(
        routes.filter((r) => r.link === l.index && r.table !== 254 && r.table !== 255).map((r) => r.table),
      );
      const ruleText = rules.filter((r) => tables.has(r.table) && r.src).map((r) => `from ${r.src} lookup ${r.table}`);
      out.push({
        name: l.name,
        network: ep ? ep.spec.NetworkName : "",
        kind: ep?.spec.apiType || (ep ? "DanmNet" : ""),
        type: l.kind,
        ips,
        ...(l.mac ? { mac: l.mac } : {}),
        ...(ep?.spec.Interface.DeviceID ? { device: ep.spec.Interface.DeviceID } : {}),
        routes: [...own, ...ruleText],
      });
    }
    return out;
  }));
