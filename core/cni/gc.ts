// CNI GC (1.1.0): the runtime names the attachments that are still valid (`cni.dev/valid-attachments`); danm frees
// everything else it holds on this node — what a missed DEL left (DANM's IP leak, #167):
//   1. sandboxes with a record or a DanmEp on this node that are not valid: a full teardown each;
//   2. IPAM reservations of this node whose sandbox is not valid (the reservation outlived both record and DanmEp);
//   3. each delegate list that speaks 1.1.0 gets its own GC with the attachments still valid for it.
// Sandboxes with an operation in flight and anything younger than the grace period are left alone.
import { Clock, Effect } from "effect";
import { reclaimSandboxes } from "../ipam/reclaim.ts";
import { chainGc, type DelegateChain } from "./attach/delegate.ts";
import { delSandbox } from "./del.ts";
import type { ValidAttachment } from "./netconf.ts";
import { CniError, ErrorCode, type Invocation } from "./protocol.ts";
import { CurrentCniMetrics, CurrentRequest } from "./metrics.ts";
import { CniRuntime } from "./runtime.ts";
import { listRecords, readRecord, type SandboxRecord } from "./state.ts";

export interface GcReport {
  readonly sandboxes: ReadonlyArray<string>;
  readonly reservations: ReadonlyArray<string>;
  readonly delegates: number;
  readonly problems: ReadonlyArray<string>;
}

const chainKey = (c: DelegateChain) => JSON.stringify([c.source, c.name, c.plugins.map((p) => p.type)]);

export const gc = (inv: Invocation, valid: ReadonlyArray<ValidAttachment> | undefined, cniDir: string) =>
  Effect.gen(function* () {
    if (valid === undefined) {
      return yield* new CniError({
        code: ErrorCode.invalidNetworkConfig,
        msg: "GC needs cni.dev/valid-attachments",
        details: "without the list every attachment would look stale",
      });
    }
    const rt = yield* CniRuntime;
    const cfg = rt.config;
    const validIds = new Set(valid.map((v) => v.containerID));
    const busy = yield* rt.busy;
    const now = yield* Clock.currentTimeMillis;
    const old = (iso: string | undefined) => iso === undefined || (now - Date.parse(iso)) / 1000 >= cfg.gcGraceSeconds;
    const problems: string[] = [];

    const records: SandboxRecord[] = [];
    for (const id of yield* Effect.orElseSucceed(listRecords(cfg.stateDir), () => [])) {
      const r = yield* Effect.orElseSucceed(readRecord(cfg.stateDir, id), () => undefined);
      if (r) records.push(r);
    }
    const stale = new Set<string>();
    for (const r of records) {
      if (!validIds.has(r.containerId) && !busy.has(r.containerId) && old(r.created)) stale.add(r.containerId);
    }
    for (const ep of yield* rt.nodeEndpoints) {
      const cid = ep.spec.CID;
      if (cid && !validIds.has(cid) && !busy.has(cid) && old(ep.metadata.creationTimestamp)) stale.add(cid);
    }
    const freed: string[] = [];
    for (const cid of stale) {
      const out = yield* rt.withSandboxLock(cid, delSandbox({ containerId: cid, cniPath: inv.path, cniDir }));
      if (out.problems.length === 0) freed.push(cid);
      else problems.push(...out.problems.map((p) => `sandbox ${cid}: ${p.message}`));
    }

    // Reservations no record or DanmEp accounted for (an ADD that died between reserving and recording).
    const keep = new Set([...validIds, ...busy]);
    const reclaimed = yield* Effect.result(reclaimSandboxes(cfg.nodeName, keep, { graceSeconds: cfg.gcGraceSeconds }));
    const reservations = reclaimed._tag === "Success" ? reclaimed.success.freed : [];
    if (reclaimed._tag === "Failure") problems.push(`IPAM: ${reclaimed.failure.message}`);

    // Delegate GC: every list in use here, with the attachments still valid for it.
    const chains = new Map<string, { chain: DelegateChain; valid: ValidAttachment[] }>();
    for (const r of records) {
      for (const a of r.attachments) {
        if (!a.delegate) continue;
        const k = chainKey(a.delegate);
        const entry = chains.get(k) ?? { chain: a.delegate, valid: [] };
        if (validIds.has(r.containerId)) entry.valid.push({ containerID: r.containerId, ifname: a.ifName });
        chains.set(k, entry);
      }
    }
    let delegates = 0;
    for (const { chain, valid: v } of chains.values()) {
      const r = yield* Effect.result(chainGc(chain, v, {
        cniPath: inv.path,
        path: cfg.delegatePath,
        socket: cfg.socketPath,
        timeoutMs: cfg.delegateTimeoutMs,
      }));
      if (r._tag === "Failure") problems.push(`delegate ${chain.source}: ${r.failure.message}`);
      else if (r.success) delegates++;
    }
    const request = yield* CurrentRequest;
    if (request) {
      request.details.freed_sandboxes = freed.length;
      request.details.freed_reservations = reservations.length;
    }
    const metrics = yield* CurrentCniMetrics;
    if (freed.length > 0) metrics?.gcFreed.inc({ kind: "sandbox" }, freed.length);
    if (reservations.length > 0) metrics?.gcFreed.inc({ kind: "reservation" }, reservations.length);
    return { sandboxes: freed, reservations, delegates, problems } satisfies GcReport;
  });
