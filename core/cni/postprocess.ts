// What DANM does to every interface after its backend created it (danm-spec §4.9), whatever the backend:
// per-interface sysctls, IPv6 without DAD, the network's routes in the main table and the pod's policy routes
// (`ip rule from <ip>/<prefix> lookup <rt_tables>` plus its routes in that table).
//
// Differences from DANM, on purpose: IPv6 is disabled only on an interface that really has no IPv6 address after
// its backend ran (a delegate's own IPv6 is kept), a route the kernel refuses fails the attachment instead of
// vanishing silently, and sysctl keys the kernel lacks (IPv6 disabled at boot) are skipped.
import { Effect } from "effect";
import type { NetlinkError, NetnsHandle } from "../ports/netlink.ts";
import { step, type StepError } from "./errors.ts";
import { formatCidr, parseCidr, parseIp } from "../net/ip.ts";
import { isV6, ruleSource } from "./addresses.ts";
import type { AttachmentPlan } from "./plan.ts";
import type { RuleRecord } from "./state.ts";

const setIfPresent = (pod: NetnsHandle, key: string, value: string) =>
  pod.setSysctl(key, value).pipe(
    Effect.catchTag("NetlinkNotFound", () => Effect.logDebug(`sysctl ${key} does not exist here; skipped`)),
  );

/** DANM's per-interface sysctls: IPv6 on without autoconfiguration and RAs (NDISC notify on), or IPv6 off. */
export const interfaceSysctls = (
  pod: NetnsHandle,
  ifName: string,
  hasV6: boolean,
): Effect.Effect<void, StepError> =>
  Effect.gen(function* () {
    const conf = `net/ipv6/conf/${ifName}`;
    if (hasV6) {
      yield* setIfPresent(pod, "net/ipv6/conf/all/disable_ipv6", "0");
      yield* setIfPresent(pod, `${conf}/disable_ipv6`, "0");
      yield* setIfPresent(pod, `${conf}/autoconf`, "0");
      yield* setIfPresent(pod, `${conf}/accept_ra`, "0");
      yield* setIfPresent(pod, `${conf}/ndisc_notify`, "1");
    } else {
      yield* setIfPresent(pod, `${conf}/disable_ipv6`, "1");
    }
  }).pipe(step(`set the IPv6 sysctls of ${ifName}`));

const isLinkLocal6 = (a: string) => /^fe[89ab]/i.test(a);

export interface PostProcessed {
  readonly rules: ReadonlyArray<RuleRecord>;
  /** False when the interface is not a kernel link in the pod (a user-space device): nothing was done. */
  readonly present: boolean;
}

/**
 * Routes and policy routes of `plan` for the interface holding `addresses`; for delegated interfaces
 * (`builtin` false) also the sysctls and the IPv6 no-DAD re-add the built-in backend does itself.
 */
export const postProcess = (
  pod: NetnsHandle,
  plan: AttachmentPlan,
  addresses: ReadonlyArray<string>,
  builtin: boolean,
): Effect.Effect<PostProcessed, StepError> =>
  Effect.gen(function* () {
    const ifName = plan.ifName;
    const exists = yield* pod.link(ifName).pipe(
      Effect.as(true),
      Effect.catchTag("NetlinkNotFound", () => Effect.succeed(false)),
      step(`look up ${ifName}`),
    );
    if (!exists) {
      yield* Effect.logWarning(
        `${plan.label}: no link ${ifName} in the pod (a user-space device?): not post-processed`,
      );
      return { rules: [], present: false };
    }
    const v4 = addresses.filter((a) => !isV6(a));
    const v6 = addresses.filter((a) => isV6(a) && !isLinkLocal6(a));
    if (!builtin) {
      yield* interfaceSysctls(pod, ifName, v6.length > 0);
      for (const a of v6) {
        yield* pod.replaceAddress({ link: ifName, cidr: a, nodad: true }).pipe(step(`re-add ${a} without DAD`));
      }
    }
    const routes = (table: Readonly<Record<string, string>>, family: 4 | 6, tableId?: number) =>
      Effect.forEach(Object.entries(table), ([dst, gw]) => {
        const d = parseCidr(dst), g = parseIp(gw);
        if (!d || !g || d.cidr.family !== family || g.family !== family) {
          // DANM skips malformed entries silently; the webhook refuses them, so this is only old objects.
          return Effect.logWarning(`${plan.label}: route ${dst} via ${gw} is malformed and skipped`);
        }
        const net = formatCidr(d.cidr);
        const spec = { dst: net, gateway: gw, link: ifName, ...(tableId === undefined ? {} : { table: tableId }) };
        return pod.replaceRoute(spec).pipe(
          step(`add route ${net} via ${gw} dev ${ifName}${tableId === undefined ? "" : ` table ${tableId}`}`),
        );
      }, { discard: true });
    if (v4.length > 0) yield* routes(plan.routes, 4);
    if (v6.length > 0) yield* routes(plan.routes6, 6);
    const rules: RuleRecord[] = [];
    if (plan.rtTable !== undefined) {
      for (const [family, list, proutes] of [[4, v4, plan.proutes], [6, v6, plan.proutes6]] as const) {
        if (list.length === 0 || Object.keys(proutes).length === 0) continue;
        const src = ruleSource(list[0]);
        if (src === undefined) continue;
        yield* pod.addRule({ src, table: plan.rtTable }).pipe(
          // Two interfaces of one pod on one network share the rule.
          Effect.catchTag("NetlinkExists", () => Effect.void),
          step(`add rule from ${src} lookup ${plan.rtTable}`),
        );
        rules.push({ src, table: plan.rtTable });
        yield* routes(proutes, family, plan.rtTable);
      }
    }
    return { rules, present: true };
  });

/** Removes policy rules (their routes die with the interface); what is already gone is fine. */
export const removeRules = (
  pod: NetnsHandle,
  rules: ReadonlyArray<RuleRecord>,
): Effect.Effect<void, NetlinkError> =>
  Effect.forEach(
    rules,
    (r) => pod.deleteRule({ src: r.src, table: r.table }).pipe(Effect.catchTag("NetlinkNotFound", () => Effect.void)),
    { discard: true },
  );
