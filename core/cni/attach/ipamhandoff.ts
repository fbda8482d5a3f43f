// Handing danm's addresses to a delegate without starting a Deno process for it. DANM's way (spec §4.6) is a
// `fakeipam` section: the delegate execs `fakeipam`, a thin client of this daemon, which echoes the addresses danm
// reserved — one Deno start (~20 ms of CPU, ~11 MiB) per delegated attachment. When the reference `static` IPAM
// plugin is in CNI_PATH (containernetworking/plugins ships it next to macvlan and bridge) and the delegate is one of
// the reference plugins that only exec their IPAM, the daemon gives `static` the same addresses instead (a Go start
// of ~3.5 ms): the delegate's result is the same. fakeipam stays the fallback — no `static`, any other plugin (a
// plugin of the user's may read `ipam.ips` itself), or a call that could make `static` add or refuse addresses.
import { Effect, Option } from "effect";
import { Fs } from "../../ports/filesystem.ts";
import { DelegateError } from "../errors.ts";
import { CurrentCniMetrics } from "../metrics.ts";
import { compareVersions } from "../netconf.ts";
import { CniRuntime } from "../runtime.ts";

type PluginConfig = Readonly<Record<string, unknown>>;

/** Finds `type` in CNI_PATH (the runtime's order); in the node daemon a found path is kept per CNI_PATH and type. */
export const resolveBinary = (type: string, cniPath: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const cache = Option.getOrUndefined(yield* Effect.serviceOption(CniRuntime))?.pluginBinaries;
    const key = binaryKey(type, cniPath);
    const cached = cache?.get(key);
    if (cached !== undefined) return cached;
    const fs = yield* Fs;
    for (const dir of cniPath) {
      const path = `${dir}/${type}`;
      if (yield* Effect.orElseSucceed(fs.exists(path), () => false)) {
        cache?.set(key, path);
        return path;
      }
    }
    return undefined;
  });

/** Drops a cached path (its exec failed: the binary may have moved; the next call looks again). */
export const forgetBinary = (type: string, cniPath: ReadonlyArray<string>) =>
  Effect.map(Effect.serviceOption(CniRuntime), (rt) => {
    if (Option.isSome(rt)) rt.value.pluginBinaries.delete(binaryKey(type, cniPath));
  });

const binaryKey = (type: string, cniPath: ReadonlyArray<string>) => `${cniPath.join(":")}\n${type}`;

/** Reference plugins whose only use of their `ipam` section is to exec that IPAM plugin and take its result. */
const execsItsIpam = new Set(["bridge", "macvlan", "ipvlan", "ptp", "vlan", "host-device", "tap", "dummy"]);

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null;

/**
 * Whether `static` would take exactly the addresses given: it also adds `IP=` of CNI_ARGS, replaces them with
 * `args.cni.ips` or `runtimeConfig.ips`, and refuses CNI_ARGS keys it does not know unless `IgnoreUnknown` is set.
 */
const staticTakesOnlyGiven = (plugin: PluginConfig, cniArgs: string): boolean => {
  if (isObject(plugin.runtimeConfig) && "ips" in plugin.runtimeConfig) return false;
  if (isObject(plugin.args) && isObject(plugin.args.cni) && "ips" in plugin.args.cni) return false;
  if (cniArgs === "") return true;
  const pairs = cniArgs.split(";").map((kv) => kv.split("="));
  if (pairs.some((kv) => kv.length < 2 || kv[0] === "IP" || kv[0] === "GATEWAY")) return false;
  const ignoreUnknown = pairs.find(([k]) => k === "IgnoreUnknown")?.[1]?.toLowerCase();
  return ignoreUnknown === "1" || ignoreUnknown === "true" || pairs.every(([k]) => k === "IgnoreUnknown");
};

/** A ticket's addresses (core/cni/tickets.ts), with the wait in the ticket histogram, as fakeipam redeems them. */
export const redeemTicket = (ticket: string) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const metrics = yield* CurrentCniMetrics;
    const started = performance.now();
    return yield* rt.tickets.redeem(ticket, rt.config.attachTimeoutMs).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() =>
          metrics?.ticketWait.observe((performance.now() - started) / 1000, {
            result: exit._tag === "Success" ? "success" : "error",
          })
        )
      ),
    );
  });

/**
 * `plugin` with its fakeipam section replaced by a `static` one holding the same addresses, when that is safe (see
 * above); a ticket is redeemed here first, so the delegate starts once the reservation is made. Otherwise `plugin`.
 */
export const staticForFakeIpam = (
  plugin: PluginConfig,
  inv: { readonly cniPath: ReadonlyArray<string>; readonly cniArgs: string },
): Effect.Effect<PluginConfig, DelegateError, Fs> =>
  Effect.gen(function* () {
    const ipam = plugin.ipam;
    if (!isObject(ipam) || ipam.type !== "fakeipam") return plugin;
    if (!execsItsIpam.has(String(plugin.type))) return plugin;
    if (typeof plugin.cniVersion !== "string" || compareVersions(plugin.cniVersion, "0.3.0") < 0) return plugin;
    if (!staticTakesOnlyGiven(plugin, inv.cniArgs)) return plugin;
    if ((yield* resolveBinary("static", inv.cniPath)) === undefined) return plugin;
    let addresses: ReadonlyArray<string>;
    if (Array.isArray(ipam.ips)) {
      addresses = ipam.ips.map((ip) => (isObject(ip) ? String(ip.ipcidr) : ""));
    } else if (typeof ipam.ticket === "string") {
      const runtime = yield* Effect.serviceOption(CniRuntime);
      if (Option.isNone(runtime)) return plugin;
      addresses = yield* redeemTicket(ipam.ticket).pipe(
        Effect.provideService(CniRuntime, runtime.value),
        Effect.mapError((reason) =>
          new DelegateError({ plugin: "static", command: "ADD", code: 11, reason: `no addresses reserved: ${reason}` })
        ),
      );
    } else {
      return plugin;
    }
    // No address (only "none" asked) or one that is not an address: fakeipam's own error says so.
    if (addresses.length === 0 || addresses.some((a) => !a.includes("/"))) return plugin;
    return { ...plugin, ipam: { type: "static", addresses: addresses.map((address) => ({ address })) } };
  });
