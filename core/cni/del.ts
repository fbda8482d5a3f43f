// CNI DEL, and the teardown ADD's rollback, GC and the retry queue share (danm-spec §4.2, §4.12).
//
// What a sandbox holds is found without prevResult: from its node-local record (state.ts), else from its DanmEps
// (the node's DanmEp cache, then the apiserver by sandbox label, then by CID in the pod's namespace), else from
// prevResult's interfaces. Each attachment is undone independently and idempotently: policy rules, the delegate's
// DEL (with the config and result ADD used), the built-in interface, the IPAM reservation (by owner: pod UID +
// interface + sandbox), the DanmEp. A missing namespace or object is success.
//
// DEL never fails for what it cannot undo right now (DANM, #167: a failing DEL strands pods in Terminating); the
// sandbox stays recorded and the daemon retries in the background, and GC catches whatever is left after that.
import { Clock, Effect, Ref } from "effect";
import { type DanmEp, isNetworkKind, type Network, type NetworkKind } from "../api/danm.ts";
import type { DirectoryError } from "../podnetworks/selection.ts";
import type { NetworkRef as IpamRef } from "../api/ipam.ts";
import { Ipam } from "../ipam/allocator.ts";
import { Netlink, type NetlinkError, type NetnsHandle, NetnsRef } from "../ports/netlink.ts";
import { chainDel, type DelegateChain } from "./attach/delegate.ts";
import { backendOf } from "./backends/kinds.ts";
import { moduleOf } from "./backends/table.ts";
import { deleteEndpoint, listSandboxEndpoints } from "./endpoints.ts";
import { AttachmentError, step, type StepError } from "./errors.ts";
import { removeRules } from "./postprocess.ts";
import { describeNetwork } from "./plan.ts";
import { type Invocation as CniInvocation, type Result } from "./protocol.ts";
import { CurrentRequest } from "./metrics.ts";
import { CniRuntime } from "./runtime.ts";
import {
  type AttachmentRecord,
  readRecord,
  removeRecord,
  type RuleRecord,
  type SandboxRecord,
  writeRecord,
} from "./state.ts";

/** One attachment to undo. */
export interface TeardownItem {
  readonly ifName: string;
  readonly label: string;
  /**
   * "ipvlan": danm built the link in (IPVLAN or MACVLAN; the record's value, state.ts) and deletes it; "delegate":
   * the delegate's DEL does; "unknown": delete if present.
   */
  readonly backend: "ipvlan" | "delegate" | "unknown";
  readonly delegate?: DelegateChain;
  readonly delegateResult?: unknown;
  readonly ipam?: IpamRef;
  readonly epName?: string;
  readonly rules: ReadonlyArray<RuleRecord>;
  /** Links danm made beside a delegate's (DPDK dummy and VLAN): deleted after the delegate's DEL. */
  readonly ownLinks?: ReadonlyArray<string>;
}

export interface TeardownTarget {
  readonly containerId: string;
  readonly netns: string;
  readonly pod: { readonly namespace: string; readonly name: string; readonly uid: string };
  readonly cniPath: ReadonlyArray<string>;
  readonly cniArgs: string;
  readonly items: ReadonlyArray<TeardownItem>;
}

const linkGone = <A, R>(e: Effect.Effect<A, NetlinkError, R>) =>
  e.pipe(Effect.asVoid, Effect.catchTag("NetlinkNotFound", () => Effect.void));

/** Undoes every item concurrently; returns what could not be undone (never fails). */
export const teardown = (t: TeardownTarget) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const ipam = yield* Ipam;
    const nl = yield* Netlink;
    const cfg = rt.config;
    return yield* Effect.scoped(Effect.gen(function* () {
      // A namespace that is gone took its interfaces, addresses, routes and rules with it.
      const pod: NetnsHandle | undefined = t.netns
        ? yield* nl.netns(NetnsRef.path(t.netns)).pipe(
          Effect.map((h): NetnsHandle | undefined => h),
          Effect.catch(() => Effect.succeed(undefined)),
        )
        : undefined;
      const one = (item: TeardownItem) =>
        Effect.gen(function* () {
          const problems: StepError[] = [];
          const attempt = <R>(e: Effect.Effect<unknown, StepError, R>) =>
            Effect.catch(Effect.asVoid(e), (err) => Effect.sync(() => void problems.push(err)));
          if (pod && item.rules.length > 0) {
            yield* attempt(removeRules(pod, item.rules).pipe(step(`remove policy rules of ${item.ifName}`)));
          }
          if (item.delegate) {
            yield* attempt(
              chainDel(item.delegate, {
                containerId: t.containerId,
                netns: pod ? t.netns : "",
                ifName: item.ifName,
                cniArgs: t.cniArgs,
                cniPath: t.cniPath,
                path: cfg.delegatePath,
                socket: cfg.socketPath,
                timeoutMs: cfg.delegateTimeoutMs,
              }, item.delegateResult).pipe(step(`${item.delegate.source} DEL`)),
            );
          }
          if (pod && item.backend !== "delegate") {
            yield* attempt(linkGone(pod.deleteLink(item.ifName)).pipe(step(`delete ${item.ifName}`)));
          }
          if (pod) {
            for (const link of item.ownLinks ?? []) {
              yield* attempt(linkGone(pod.deleteLink(link)).pipe(step(`delete ${link}`)));
            }
          }
          if (item.ipam) {
            yield* attempt(
              ipam.release({ ref: item.ipam, options: {} }, {
                namespace: t.pod.namespace,
                pod: t.pod.name,
                podUid: t.pod.uid,
                sandbox: t.containerId,
                iface: item.ifName,
                node: cfg.nodeName,
              }).pipe(step("release addresses")),
            );
          }
          if (item.epName) {
            yield* attempt(deleteEndpoint(t.pod.namespace, item.epName).pipe(step(`delete DanmEp ${item.epName}`)));
          }
          return problems.map((p) =>
            new AttachmentError({ network: item.label, iface: item.ifName, operation: p.operation, reason: p.reason })
          );
        });
      const results = yield* Effect.forEach(t.items, one, { concurrency: "unbounded" });
      return results.flat();
    }));
  });

/** Record attachment → teardown item. */
export const itemFromRecord = (a: AttachmentRecord): TeardownItem => ({
  ifName: a.ifName,
  label: describeNetwork(a.network),
  backend: a.backend,
  ...(a.delegate ? { delegate: a.delegate } : {}),
  ...(a.delegateResult !== undefined ? { delegateResult: a.delegateResult } : {}),
  ...(a.ipam ? { ipam: a.ipam } : {}),
  ...(a.epName ? { epName: a.epName } : {}),
  rules: a.rules ?? [],
  ...(a.ownLinks ? { ownLinks: a.ownLinks } : {}),
});

/**
 * A DanmEp without a record (the record was lost): the network tells the backend and the IPAM network; the backend
 * says what it can undo (a delegate config regenerated or reloaded as ADD would have built it).
 */
const itemFromEndpoint = (ep: DanmEp, cniDir: string) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const kind: NetworkKind = ep.spec.apiType && isNetworkKind(ep.spec.apiType) ? ep.spec.apiType : "DanmNet";
    const namespace = kind === "ClusterNetwork" ? undefined : ep.metadata.namespace;
    const name = ep.spec.NetworkName;
    const label = describeNetwork({ kind, name, ...(namespace ? { namespace } : {}) });
    const lookup: Effect.Effect<Network | undefined, DirectoryError> = kind === "DanmNet"
      ? rt.directory.danmNet(namespace ?? "", name)
      : kind === "TenantNetwork"
      ? rt.directory.tenantNetwork(namespace ?? "", name)
      : rt.directory.clusterNetwork(name);
    const net = yield* Effect.orElseSucceed(lookup, () => undefined);
    const base = {
      ifName: ep.spec.Interface.Name,
      label,
      ...(ep.metadata.name ? { epName: ep.metadata.name } : {}),
      rules: [] as RuleRecord[],
    };
    if (!net) {
      // The network is gone: its IPBlocks go with it (the reclaimer deletes blocks of deleted networks).
      return { ...base, backend: "unknown" as const };
    }
    const ipam: IpamRef = {
      kind,
      ...(namespace ? { namespace } : {}),
      name,
      uid: net.metadata.uid ?? "",
    };
    const backend = backendOf(net.spec);
    return { ...base, ipam, ...(yield* moduleOf(backend).recover(backend, cniDir)) };
  });

export interface DelSandboxInput {
  readonly containerId: string;
  /** CNI_NETNS of the DEL, if the runtime gave one. */
  readonly netns?: string;
  readonly cniPath?: ReadonlyArray<string>;
  readonly cniArgs?: string;
  readonly podNamespace?: string;
  readonly podName?: string;
  readonly podUid?: string;
  readonly prevResult?: Result;
  readonly cniDir: string;
}

export interface DelSandboxOutcome {
  /** Attachments that were found. */
  readonly found: number;
  /** Each of them, as "<network> (<interface>)". */
  readonly networks: ReadonlyArray<string>;
  readonly problems: ReadonlyArray<AttachmentError>;
}

/** Tears one sandbox down completely (without taking its lock: callers hold it). */
export const delSandbox = (input: DelSandboxInput) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const cfg = rt.config;
    const record: SandboxRecord | undefined = yield* Effect.orElseSucceed(
      readRecord(cfg.stateDir, input.containerId),
      () => undefined,
    );
    const items: TeardownItem[] = record ? record.attachments.map(itemFromRecord) : [];
    let endpoints: ReadonlyArray<DanmEp> = yield* rt.sandboxEndpoints(input.containerId);
    let lookupFailed: string | undefined;
    if (!record && endpoints.length === 0) {
      // No record and nothing cached: ask the apiserver (the cache may lag, or the labels may have been changed).
      const listed = yield* Effect.result(
        listSandboxEndpoints(input.containerId, input.podNamespace),
      );
      if (listed._tag === "Success") endpoints = listed.success;
      else lookupFailed = listed.failure.message;
    }
    const covered = new Set(items.map((i) => i.ifName));
    for (const ep of endpoints) {
      if (covered.has(ep.spec.Interface.Name)) continue;
      items.push(yield* itemFromEndpoint(ep, input.cniDir));
      covered.add(ep.spec.Interface.Name);
    }
    if (items.length === 0 && input.prevResult) {
      // Nothing else is known: take down the pod-side interfaces the runtime says danm created.
      for (const i of input.prevResult.interfaces) {
        if (i.sandbox && !covered.has(i.name)) {
          items.push({ ifName: i.name, label: "unknown network", backend: "unknown", rules: [] });
        }
      }
    }
    const ep0 = endpoints[0]?.spec;
    const pod = record?.pod ?? {
      namespace: input.podNamespace ?? endpoints[0]?.metadata.namespace ?? "",
      name: input.podName ?? ep0?.Pod ?? "",
      uid: input.podUid ?? ep0?.PodUID ?? "",
    };
    const target: TeardownTarget = {
      containerId: input.containerId,
      netns: input.netns || record?.netns || ep0?.netns || "",
      pod,
      // The runtime's CNI_PATH, else the ADD's; a teardown no runtime asked for (retry, reclaim) of a sandbox known
      // only from its DanmEps has neither: the node's plugin directory then, or its delegates could not run.
      cniPath: [input.cniPath, record?.cniPath].find((p) => p !== undefined && p.length > 0) ?? cfg.cniPath,
      cniArgs: input.cniArgs ?? record?.cniArgs ?? "",
      items,
    };
    const problems = items.length > 0 ? yield* teardown(target) : [];
    if (lookupFailed !== undefined) {
      problems.push(
        new AttachmentError({
          network: "*",
          iface: "*",
          operation: "find the sandbox's DanmEps",
          reason: lookupFailed,
        }),
      );
    }
    if (problems.length === 0) {
      yield* Effect.ignore(removeRecord(cfg.stateDir, input.containerId));
      yield* Ref.update(rt.pendingTeardowns, (s) => {
        const n = new Set(s);
        n.delete(input.containerId);
        return n;
      });
    } else {
      // Keep (or create) the record so the retry knows what is left, then queue the retry.
      if (!record && items.length > 0) {
        yield* Effect.ignore(writeRecord(cfg.stateDir, {
          containerId: input.containerId,
          netns: target.netns,
          node: cfg.nodeName,
          created: new Date(yield* Clock.currentTimeMillis).toISOString(),
          pod,
          cniPath: [...target.cniPath],
          cniArgs: target.cniArgs,
          phase: "adding",
          attachments: items.map((i, index) => ({
            index,
            ifName: i.ifName,
            network: { kind: "", name: i.label, uid: "" },
            networkType: "",
            backend: i.backend === "delegate" ? "delegate" : "ipvlan",
            ...(i.ipam ? { ipam: i.ipam } : {}),
            ...(i.epName ? { epName: i.epName } : {}),
            ...(i.delegate ? { delegate: i.delegate } : {}),
            rules: [...i.rules],
          })),
        }));
      }
      yield* Ref.update(rt.pendingTeardowns, (s) => new Set([...s, input.containerId]));
      yield* Effect.logWarning(
        `DEL of sandbox ${input.containerId}: ${problems.length} step(s) left for a retry: ` +
          problems.map((p) => p.message).join("; "),
      );
    }
    return {
      found: items.length,
      networks: items.map((i) => `${i.label} (${i.ifName})`),
      problems,
    } satisfies DelSandboxOutcome;
  });

/** The CNI DEL command: always succeeds once the input is understood. */
export const del = (inv: CniInvocation, cniDir: string, prevResult?: Result) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const args = inv.args;
    const input: DelSandboxInput = {
      containerId: inv.containerId,
      ...(inv.netns ? { netns: inv.netns } : {}),
      cniPath: inv.path,
      cniArgs: Object.entries(args).map(([k, v]) => `${k}=${v}`).join(";"),
      ...(args.K8S_POD_NAMESPACE ? { podNamespace: args.K8S_POD_NAMESPACE } : {}),
      ...(args.K8S_POD_NAME ? { podName: args.K8S_POD_NAME } : {}),
      ...(args.K8S_POD_UID ? { podUid: args.K8S_POD_UID } : {}),
      ...(prevResult ? { prevResult } : {}),
      cniDir,
    };
    const outcome = yield* rt.withSandboxLock(inv.containerId, delSandbox(input));
    const request = yield* CurrentRequest;
    if (request) {
      request.networks = outcome.networks;
      if (outcome.problems.length > 0) request.details.steps_left_for_retry = outcome.problems.length;
    }
    return outcome;
  });
