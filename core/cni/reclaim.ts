// The node agent's own clean-up of sandboxes whose pod is gone: what a DEL that never came left behind. Runtimes do
// lose DELs (a crash during teardown, DANM #167), and not every runtime calls CNI GC (containerd does not), so the
// node agent does not wait for one:
//   1. a sandbox of this node — a record, or a DanmEp labelled with this node — whose pod no longer exists (or exists
//      under another UID) is torn down completely, as DEL would (delSandbox: links, delegates, rules, reservations,
//      DanmEps, the record);
//   2. a DanmEp of a node that no longer exists (removed for good: no agent is left there) whose pod is gone is
//      deleted; nothing of it is on this node to undo, and the IPAM reclaimer frees its reservations. Such nodes are
//      found among the nodes IPAM reservations name (a list of the IPBlocks, as the IPAM reclaimer makes; never a
//      list of every DanmEp of the cluster), and remembered until none of their DanmEps is left — the IPAM
//      reclaimer may free their last reservation first. (A removed node's DanmEps on networks without danm's IPAM
//      are left to the Kubernetes garbage collector: the pod is their owner.)
// A pod is gone only when the apiserver says so (the node's pod cache only spares the look-up of pods it holds);
// sandboxes younger than the grace period or with an operation in flight are left alone.
import { Clock, Effect } from "effect";
import { DanmEpResource } from "../api/danm.ts";
import { NodeResource } from "../api/k8s.ts";
import { BlockStore } from "../ipam/store.ts";
import { Kube } from "../ports/kube.ts";
import { delSandbox } from "./del.ts";
import { deleteEndpoint, EpLabels, labelValue } from "./endpoints.ts";
import { CniRuntime } from "./runtime.ts";
import { listRecords, readRecord } from "./state.ts";

export interface SandboxReclaimReport {
  /** "<sandbox> <namespace>/<pod>" per sandbox of this node torn down. */
  readonly sandboxes: ReadonlyArray<string>;
  /** "<namespace>/<name>" per DanmEp of a removed node deleted. */
  readonly endpoints: ReadonlyArray<string>;
  readonly problems: ReadonlyArray<string>;
}

interface Candidate {
  readonly containerId: string;
  readonly namespace: string;
  readonly pod: string;
  readonly uid: string;
}

export const reclaimGoneSandboxes = (opts: {
  graceSeconds: number;
  cniDir: string;
  /** Removed nodes whose DanmEps are still being swept (kept from round to round). */
  removedNodes: Set<string>;
}) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const kube = yield* Kube;
    const cfg = rt.config;
    const nowMs = yield* Clock.currentTimeMillis;
    const old = (iso: string | undefined) => iso === undefined || (nowMs - Date.parse(iso)) / 1000 >= opts.graceSeconds;
    const problems: string[] = [];
    /**
     * Whether pod namespace/name with this UID is gone (or finished: its sandbox is of no more use); undefined when
     * that cannot be told now. The node's pod cache answers for pods it holds, the apiserver for the others.
     */
    const gone = (namespace: string, pod: string, uid: string) =>
      Effect.gen(function* () {
        const r = yield* Effect.result(rt.pod(namespace, pod, uid));
        if (r._tag === "Failure") {
          problems.push(`pod ${namespace}/${pod}: ${r.failure.message}`);
          return undefined;
        }
        const p = r.success;
        return p === undefined || p.metadata.uid !== uid || p.status?.phase === "Succeeded" ||
          p.status?.phase === "Failed";
      });

    // 1. This node's sandboxes.
    const candidates = new Map<string, Candidate>();
    for (const id of yield* Effect.orElseSucceed(listRecords(cfg.stateDir), () => [])) {
      const r = yield* Effect.orElseSucceed(readRecord(cfg.stateDir, id), () => undefined);
      if (r && old(r.created)) {
        candidates.set(id, { containerId: id, namespace: r.pod.namespace, pod: r.pod.name, uid: r.pod.uid });
      }
    }
    for (const ep of yield* rt.nodeEndpoints) {
      const cid = ep.spec.CID;
      if (!cid || candidates.has(cid) || !old(ep.metadata.creationTimestamp)) continue;
      candidates.set(cid, {
        containerId: cid,
        namespace: ep.metadata.namespace ?? "",
        pod: ep.spec.Pod,
        uid: ep.spec.PodUID ?? "",
      });
    }
    const busy = yield* rt.busy;
    const sandboxes: string[] = [];
    for (const c of candidates.values()) {
      if (busy.has(c.containerId) || (yield* gone(c.namespace, c.pod, c.uid)) !== true) continue;
      const out = yield* rt.withSandboxLock(
        c.containerId,
        delSandbox({ containerId: c.containerId, cniDir: opts.cniDir }),
      );
      if (out.problems.length === 0) sandboxes.push(`${c.containerId} ${c.namespace}/${c.pod}`);
      else problems.push(...out.problems.map((p) => `sandbox ${c.containerId}: ${p.message}`));
    }

    // 2. DanmEps of nodes that no longer exist.
    const endpoints: string[] = [];
    const listed = yield* Effect.result(Effect.all([kube.list(NodeResource), (yield* BlockStore).listAll()]));
    if (listed._tag === "Failure") problems.push(`listing nodes and IPBlocks: ${listed.failure.message}`);
    else {
      const [nodes, blocks] = listed.success;
      const live = new Set([cfg.nodeName, ...nodes.items.map((n) => n.metadata.name ?? "")]);
      for (const b of blocks) {
        for (const r of Object.values(b.spec.reservations)) if (!live.has(r.node)) opts.removedNodes.add(r.node);
      }
      for (const node of [...opts.removedNodes]) {
        if (live.has(node)) { // it came back
          opts.removedNodes.delete(node);
          continue;
        }
        const eps = yield* Effect.result(
          kube.list(DanmEpResource, { labelSelector: `${EpLabels.node}=${labelValue(node)}` }),
        );
        if (eps._tag === "Failure") {
          problems.push(`DanmEps of removed node ${node}: ${eps.failure.message}`);
          continue;
        }
        let left = 0;
        for (const ep of eps.success.items) {
          const namespace = ep.metadata.namespace ?? "";
          if (
            !old(ep.metadata.creationTimestamp) || (yield* gone(namespace, ep.spec.Pod, ep.spec.PodUID ?? "")) !== true
          ) {
            left++;
            continue;
          }
          const r = yield* Effect.result(deleteEndpoint(namespace, ep.metadata.name ?? ""));
          if (r._tag === "Success") endpoints.push(`${namespace}/${ep.metadata.name}`);
          else {
            left++;
            problems.push(`DanmEp ${namespace}/${ep.metadata.name}: ${r.failure.message}`);
          }
        }
        if (left === 0) opts.removedNodes.delete(node);
      }
    }
    if (sandboxes.length + endpoints.length > 0) {
      yield* Effect.logInfo(
        `reclaim on ${cfg.nodeName}: tore down ${sandboxes.length} sandbox(es) of gone pods, deleted ` +
          `${endpoints.length} DanmEp(s) of removed nodes`,
      );
    }
    return { sandboxes, endpoints, problems } satisfies SandboxReclaimReport;
  });
