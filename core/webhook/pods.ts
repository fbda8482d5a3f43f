// Pod admission: the network selection annotations are checked before the pod exists, so that a mistake is a
// precise refusal at `kubectl apply` instead of a sandbox failing to start (DANM only failed at CNI ADD).
//
// Checked (core/podnetworks/selection.ts does the first four):
//   syntax of danm.io/interfaces (danm.k8s.io/interfaces) and k8s.v1.cni.cncf.io/networks; exactly one network
//   reference per entry; every network exists; ClusterNetwork AllowedTenants; interface names (DANM's naming, at
//   most 15 bytes, no duplicates); static `ip`/`ip6` inside the network's cidr/net6 and not its network,
//   broadcast or gateway address, nor reserved by another pod (the IPBlock holding it); the same static address
//   not asked twice; `dynamic` only on networks with that family — where danm's IPAM gives the addresses (always
//   for ipvlan, macvlan, sriov; on a static delegate only as core/podnetworks/addressing.ts says, else the delegate's
//   own IPAM does and `ip: dynamic` on a flannel network without a cidr is fine); a device_pool network's resource
//   requested by the pod in the quantity its interfaces need.
// Warnings (allowed): proutes on a network without rt_tables (DANM ignores them silently); an NPWG annotation
// shadowed by the danm one; a static address on a static delegate network whose own IPAM addresses it.
import { Effect } from "effect";
import { InterfacesAnnotation, NetworksAnnotation } from "../api/annotations.ts";
import { danmIpamReserves, isStaticDelegate } from "../podnetworks/addressing.ts";
import type { Network } from "../api/danm.ts";
import { ipBlockResource } from "../api/ipam.ts";
import type { Pod } from "../api/k8s.ts";
import type { NamingScheme } from "../podnetworks/naming.ts";
import {
  type Attachment,
  type DirectoryError,
  isDanmNetwork,
  NetworkDirectory,
  resolvePodAttachments,
  type SelectionError,
} from "../podnetworks/selection.ts";
import { blockName } from "../ipam/allocator.ts";
import { blockIndexOf, offsetInBlock, planFamily } from "../ipam/plan.ts";
import { contains, formatCidr, formatIp, parseIp } from "../net/ip.ts";
import { Kube, type KubeError } from "../ports/kube.ts";
import { type Problem, problem } from "./problems.ts";
import { retryTransient } from "./retry.ts";
import type { ClusterView } from "./state.ts";

export interface PodVerdict {
  readonly problems: ReadonlyArray<Problem>;
  readonly warnings: ReadonlyArray<string>;
}

const annotationField = (annotation: string | undefined, entry?: number, field?: string) =>
  annotation === undefined
    ? "metadata.annotations"
    : `metadata.annotations[${JSON.stringify(annotation)}]${entry === undefined ? "" : `[${entry}]`}${
      field === undefined ? "" : `.${field}`
    }`;

const fromSelection = (e: SelectionError): Problem =>
  problem(annotationField(e.annotation, e.entry, e.field), "pod-networks", e.reason);

const networkName = (a: Attachment) =>
  isDanmNetwork(a.network)
    ? `${a.network.kind} ${a.network.kind === "ClusterNetwork" ? "" : `${a.network.object.metadata.namespace}/`}${
      a.network.object.metadata.name ?? ""
    }`
    : `NetworkAttachmentDefinition ${a.network.object.metadata.namespace}/${a.network.object.metadata.name ?? ""}`;

/** Where an address request of an attachment was written, for messages. */
function addressField(a: Attachment, family: 4 | 6): string {
  if (a.source === "npwg") return annotationField(a.annotation, a.entry, "ips");
  if (a.source === "default") return "metadata.annotations";
  return annotationField(a.annotation, a.entry, family === 4 ? "ip" : "ip6");
}

interface StaticAddress {
  readonly attachment: Attachment;
  readonly family: 4 | 6;
  readonly value: bigint;
  readonly text: string;
}

function addressProblems(a: Attachment, net: Network, statics: StaticAddress[], warnings: string[]): Problem[] {
  const out: Problem[] = [];
  const options = net.spec.Options ?? {};
  const reservedByDanm = danmIpamReserves(net.spec, a.ip, a.ip6);
  for (const family of [4, 6] as const) {
    const request = family === 4 ? a.ip : a.ip6;
    if (request === undefined || request === "" || request === "none") continue;
    const field = addressField(a, family);
    const cidrField = family === 4 ? "cidr" : "net6";
    if (!reservedByDanm) {
      // The delegate's own IPAM addresses the interface (its .conf says which); danm passes the request by.
      if (request !== "dynamic") {
        warnings.push(
          `${field}: ${networkName(a)} has no ${cidrField}, so ${net.spec.NetworkType}'s own IPAM chooses the ` +
            `address and "${request}" is not honoured`,
        );
      }
      continue;
    }
    const { plan } = planFamily(options, family);
    if (plan === undefined) {
      const both = isStaticDelegate(net.spec)
        ? ` (the ${family === 4 ? "ip6" : "ip"} request puts this ${net.spec.NetworkType} interface under ` +
          `danm's IPAM, which then allocates every family asked for)`
        : "";
      out.push(
        problem(
          field,
          "pod-ip-l2",
          `${networkName(a)} has no ${cidrField}: no IPv${family} address can be allocated on it${both}`,
        ),
      );
      continue;
    }
    if (request === "dynamic") continue;
    const ip = parseIp(request.split("/")[0]);
    if (!ip || ip.family !== family) {
      out.push(problem(field, "pod-ip", `"${request}" is not an IPv${family} address`));
      continue;
    }
    const shown = formatIp(ip);
    if (!contains(plan.network, ip)) {
      out.push(
        problem(
          field,
          "pod-ip",
          `${shown} is not inside ${cidrField} ${formatCidr(plan.network)} of ${networkName(a)}`,
        ),
      );
    } else if (plan.reserved.has(ip.value)) {
      out.push(
        problem(
          field,
          "pod-ip",
          `${shown} is reserved on ${networkName(a)} (network, broadcast or route gateway address)`,
        ),
      );
    } else {
      statics.push({ attachment: a, family, value: ip.value, text: shown });
    }
  }
  return out;
}

const quantity = (v: string | number | undefined): number => {
  if (v === undefined) return 0;
  const n = typeof v === "number" ? v : Number(v);
  return Number.isFinite(n) ? n : 0;
};

function deviceRequestProblems(pod: Pod, attachments: ReadonlyArray<Attachment>): Problem[] {
  const needed = new Map<string, Attachment[]>();
  for (const a of attachments) {
    if (!isDanmNetwork(a.network)) continue;
    const pool = a.network.object.spec.Options?.device_pool;
    if (!pool) continue;
    needed.set(pool, [...(needed.get(pool) ?? []), a]);
  }
  const out: Problem[] = [];
  for (const [pool, users] of needed) {
    let requested = 0;
    for (const c of pod.spec.containers) {
      requested += Math.max(quantity(c.resources?.limits?.[pool]), quantity(c.resources?.requests?.[pool]));
    }
    if (requested >= users.length) continue;
    out.push(
      problem(
        annotationField(users[0].annotation, users[0].entry),
        "pod-device-request",
        `${users.length} interface(s) on device pool ${pool} need as many devices, but the containers ` +
          `request ${requested} (add resources.requests and limits "${pool}": "${users.length}")`,
      ),
    );
  }
  return out;
}

/** The pod's interfaces checked against the networks and their reservations. */
export const checkPod = (
  pod: Pod,
  namespace: string,
  podName: string,
  scheme: NamingScheme,
  view: ClusterView,
): Effect.Effect<PodVerdict, DirectoryError | KubeError, Kube> =>
  Effect.gen(function* () {
    const resolved = yield* resolvePodAttachments({
      namespace,
      ...(pod.metadata.annotations ? { annotations: pod.metadata.annotations } : {}),
    }, scheme).pipe(
      Effect.provideService(NetworkDirectory, view.directory),
      Effect.map((r) => ({ ok: true as const, r })),
      Effect.catchTag("SelectionError", (e) => Effect.succeed({ ok: false as const, e })),
    );
    if (!resolved.ok) return { problems: [fromSelection(resolved.e)], warnings: [] };
    const { attachments, warnings } = resolved.r;
    const problems: Problem[] = [];
    const extraWarnings: string[] = [];
    const statics: StaticAddress[] = [];
    for (const a of attachments) {
      if (!isDanmNetwork(a.network)) continue;
      const net = a.network.object;
      problems.push(...addressProblems(a, net, statics, extraWarnings));
      const hasProutes = Object.keys(a.proutes).length + Object.keys(a.proutes6).length > 0;
      if (hasProutes && net.spec.Options?.rt_tables === undefined) {
        extraWarnings.push(
          `${annotationField(a.annotation, a.entry, "proutes")}: ${networkName(a)} has no rt_tables, ` +
            `so the policy routes are not installed`,
        );
      }
    }
    problems.push(...deviceRequestProblems(pod, attachments));
    // The same static address twice on one network.
    const seen = new Map<string, StaticAddress>();
    for (const s of statics) {
      const key = `${networkName(s.attachment)}|${s.family}|${s.value}`;
      const first = seen.get(key);
      if (first) {
        problems.push(
          problem(
            addressField(s.attachment, s.family),
            "pod-ip",
            `${s.text} is also requested by entry ${first.attachment.entry} on ${networkName(s.attachment)}`,
          ),
        );
      } else seen.set(key, s);
    }
    // Reservations held by other pods: one GET of the block holding each static address.
    const kube = yield* Kube;
    const self = `${namespace}/${podName}`;
    for (const s of seen.values()) {
      const a = s.attachment;
      if (!isDanmNetwork(a.network)) continue;
      const net = a.network.object;
      const plan = planFamily(net.spec.Options ?? {}, s.family).plan;
      if (!plan || !net.metadata.uid) continue;
      const ref = {
        kind: a.network.kind,
        name: net.metadata.name ?? "",
        uid: net.metadata.uid,
        ...(a.network.kind === "ClusterNetwork" ? {} : { namespace: net.metadata.namespace ?? namespace }),
      };
      const block = yield* retryTransient(
        kube.get(ipBlockResource, blockName(ref, s.family, blockIndexOf(plan, s.value))),
      ).pipe(
        Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
      );
      const holder = block?.spec.reservations[String(offsetInBlock(plan, s.value))];
      if (holder && holder.pod !== self) {
        problems.push(
          problem(
            addressField(a, s.family),
            "pod-ip-reserved",
            `${s.text} on ${networkName(a)} is already reserved by pod ${holder.pod} (interface ${holder.iface})`,
          ),
        );
      }
    }
    return { problems, warnings: [...warnings, ...extraWarnings] };
  });

/** The annotations that send a pod to this webhook (the matchConditions of its registration test the same). */
export const selectionAnnotations = [InterfacesAnnotation, "danm.k8s.io/interfaces", NetworksAnnotation] as const;
