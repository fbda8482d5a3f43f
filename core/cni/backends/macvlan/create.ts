// The built-in MACVLAN backend (danm-spec §4.4): what the reference `macvlan` plugin did with the config danm
// generated for it — a bridge-mode macvlan on the network's parent, created directly in the pod namespace under its
// final name, MTU from the network or the parent, `arp_notify` on, the reserved addresses (IPv4 with their subnet's
// broadcast address), up — done over netlink in the daemon instead of two process starts per attachment (macvlan
// and its IPAM plugin). A MAC given as the plugin took one (`MAC=` in CNI_ARGS, `mac` in the pod's cni-args, the
// latter winning) is set the same way.
import { Effect } from "effect";
import type { NetnsHandle } from "../../../ports/netlink.ts";
import { step, StepError } from "../../errors.ts";
import { configureInterface } from "../../attach/configure.ts";
import { createOnParent, type SubLinkPlace } from "../../attach/parent.ts";

export interface MacvlanInput extends SubLinkPlace {
  readonly pod: NetnsHandle;
  /** Lower-case colon-separated; absent = the kernel's random one. */
  readonly mac: string | undefined;
  /** Addresses with the network prefix. */
  readonly addresses: ReadonlyArray<string>;
}

export interface MacvlanOutcome {
  readonly mac: string | undefined;
}

const macPattern = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * The MAC the reference plugin would have set: `MAC=` of CNI_ARGS, overridden by a string `mac` of the pod's
 * cni-args (its `args.cni`). Written as the plugin accepts it (Go's net.ParseMAC: colons or dashes, any case).
 */
export const requestedMac = (
  cniArgs: Readonly<Record<string, string>>,
  podCniArgs: Readonly<Record<string, unknown>> | undefined,
): Effect.Effect<string | undefined, StepError> =>
  Effect.gen(function* () {
    const fromEnv = cniArgs.MAC;
    const fromPod = typeof podCniArgs?.mac === "string" ? podCniArgs.mac : undefined;
    const given = fromPod || fromEnv;
    if (!given) return undefined;
    const mac = given.toLowerCase().replaceAll("-", ":");
    if (!macPattern.test(mac)) {
      return yield* new StepError({ operation: "choose the macvlan MAC", reason: `"${given}" is not a MAC address` });
    }
    return mac;
  });

export const createMacvlan = (i: MacvlanInput): Effect.Effect<MacvlanOutcome, StepError> =>
  Effect.gen(function* () {
    yield* createOnParent(i, { kind: "macvlan", mode: "bridge", ...(i.mac ? { mac: i.mac } : {}) });
    // As the plugin: announce the address when the link comes up; it ignores a failure too.
    yield* i.pod.setSysctl(`net/ipv4/conf/${i.ifName}/arp_notify`, "1").pipe(
      Effect.catch((e) => Effect.logDebug(`arp_notify on ${i.ifName}: ${e.message}`)),
    );
    yield* configureInterface(i.pod, i.ifName, i.addresses, {}, { broadcast: true });
    const link = yield* i.pod.link(i.ifName).pipe(step(`read ${i.ifName}`));
    return { mac: link.mac };
  });
