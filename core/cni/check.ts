// CNI CHECK (0.4.0+; DANM's was a no-op): every interface danm set up for the sandbox is still there with its
// addresses and policy rules, every delegate's own CHECK passes (with the result it gave at ADD), and everything
// the runtime's prevResult lists inside the pod exists. Any damage fails CHECK, naming what is missing.
import { Effect } from "effect";
import { type Link, Netlink, type NetnsHandle, NetnsRef } from "../ports/netlink.ts";
import { chainCheck } from "./attach/delegate.ts";
import { backendOf } from "./backends/kinds.ts";
import { moduleOf } from "./backends/table.ts";
import { cniError } from "./errors.ts";
import { describeNetwork } from "./plan.ts";
import { CniError, ErrorCode, type Invocation, type Result } from "./protocol.ts";
import { CniRuntime } from "./runtime.ts";
import { type AttachmentRecord, readRecord } from "./state.ts";

interface Expectation {
  readonly label: string;
  readonly ifName: string;
  readonly addresses: ReadonlyArray<string>;
  /** A delegate may name its interface otherwise (or keep it in user space): then only its own CHECK counts. */
  readonly mustExist: boolean;
  readonly record?: AttachmentRecord;
  /** What is wrong with the link a built-in backend made, if anything (its backend's `checkLink`). */
  readonly checkLink?: (link: Link) => string | undefined;
}

/** The `checkLink` of the built-in backend of a recorded NetworkType, if it has one. */
const builtInLinkCheck = (networkType: string) => {
  const backend = moduleOf(backendOf({ NetworkType: networkType }));
  return backend.checkLink ? (link: Link) => backend.checkLink?.(link) : undefined;
};

const sameAddress = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

const verifyInterface = (pod: NetnsHandle, e: Expectation) =>
  Effect.gen(function* () {
    const problems: string[] = [];
    const link = yield* pod.link(e.ifName).pipe(
      Effect.map((l): Link | undefined => l),
      Effect.catchTag("NetlinkNotFound", () => Effect.succeed(undefined)),
      Effect.catch((err) => Effect.sync(() => void problems.push(`reading ${e.ifName}: ${err.message}`))),
    );
    if (!link) {
      if (e.mustExist) problems.push(`interface ${e.ifName} is missing`);
      return problems;
    }
    if (!link.up) problems.push(`interface ${e.ifName} is down`);
    const wrong = e.checkLink?.(link);
    if (wrong) problems.push(`interface ${e.ifName} ${wrong}`);
    const present = yield* pod.addresses({ link: link.index }).pipe(Effect.orElseSucceed(() => []));
    for (const a of e.addresses) {
      if (!present.some((p) => sameAddress(p.cidr, a))) problems.push(`address ${a} is missing on ${e.ifName}`);
    }
    for (const r of e.record?.rules ?? []) {
      const rules = yield* pod.rules(r.src.includes(":") ? 6 : 4).pipe(Effect.orElseSucceed(() => []));
      if (!rules.some((x) => x.src === r.src && x.table === r.table)) {
        problems.push(`policy rule from ${r.src} lookup ${r.table} is missing`);
      }
    }
    return problems;
  });

export const check = (inv: Invocation, prevResult: Result | undefined) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const cfg = rt.config;
    return yield* rt.withSandboxLock(
      inv.containerId,
      Effect.gen(function* () {
        const record = yield* readRecord(cfg.stateDir, inv.containerId).pipe(
          Effect.mapError((e) => cniError("CHECK cannot read the sandbox record", e.message, ErrorCode.ioFailure)),
        );
        const expectations: Expectation[] = [];
        if (record) {
          for (const a of record.attachments) {
            expectations.push({
              label: describeNetwork(a.network),
              ifName: a.ifName,
              addresses: a.addresses ?? [],
              mustExist: a.backend === "ipvlan" || a.ipam !== undefined,
              record: a,
              ...(a.backend === "ipvlan" ? { checkLink: builtInLinkCheck(a.networkType) } : {}),
            });
          }
        } else {
          for (const ep of yield* rt.sandboxEndpoints(inv.containerId)) {
            const i = ep.spec.Interface;
            expectations.push({
              label: `${ep.spec.apiType || "DanmNet"} ${ep.spec.NetworkName}`,
              ifName: i.Name,
              addresses: [i.Address ?? "", i.AddressIPv6 ?? ""].filter((a) => a !== "" && a !== "none"),
              mustExist: true,
            });
          }
        }
        if (expectations.length === 0) {
          return yield* new CniError({
            code: ErrorCode.unknownContainer,
            msg: `danm knows no attachments of container ${inv.containerId}`,
          });
        }
        const problems = yield* Effect.scoped(Effect.gen(function* () {
          const nl = yield* Netlink;
          const pod = yield* Effect.result(nl.netns(NetnsRef.path(inv.netns)));
          if (pod._tag === "Failure") return [`the pod network namespace ${inv.netns} is gone: ${pod.failure.message}`];
          const handle = pod.success;
          const perAttachment = yield* Effect.forEach(expectations, (e) =>
            Effect.gen(function* () {
              const found = (yield* verifyInterface(handle, e)).map((p) => `network ${e.label}: ${p}`);
              const chain = e.record?.delegate;
              if (chain) {
                const r = yield* Effect.result(chainCheck(chain, {
                  containerId: inv.containerId,
                  netns: inv.netns,
                  ifName: e.ifName,
                  cniArgs: record?.cniArgs ?? "",
                  cniPath: inv.path.length > 0 ? inv.path : record?.cniPath ?? [],
                  path: cfg.delegatePath,
                  socket: cfg.socketPath,
                  timeoutMs: cfg.delegateTimeoutMs,
                }, e.record?.delegateResult));
                if (r._tag === "Failure") found.push(`network ${e.label}: ${r.failure.message}`);
              }
              return found;
            }), { concurrency: "unbounded" });
          const fromRuntime: string[] = [];
          for (const [index, iface] of (prevResult?.interfaces ?? []).entries()) {
            if (iface.sandbox === undefined) continue;
            const addresses = (prevResult?.ips ?? []).filter((ip) => ip.interface === index).map((ip) => ip.address);
            const known = expectations.find((e) => e.ifName === iface.name);
            if (known && !known.mustExist) continue;
            fromRuntime.push(
              ...(yield* verifyInterface(handle, {
                label: "prevResult",
                ifName: iface.name,
                addresses,
                mustExist: true,
              }))
                .map((p) => `prevResult: ${p}`),
            );
          }
          return [...perAttachment.flat(), ...fromRuntime];
        }));
        if (problems.length > 0) {
          return yield* new CniError({
            code: ErrorCode.attachmentFailed,
            msg: `CHECK of container ${inv.containerId} failed: ${problems.length} problem(s)`,
            details: [...new Set(problems)].join("\n"),
          });
        }
      }),
    );
  });
