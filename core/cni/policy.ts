// MultiNetworkPolicy in the CNI ADD (#22): when the node agent's policy controller runs in this process (the CNI
// daemon lives in the node agent), the pod's table is programmed before the ADD reports success, so a new pod never
// runs with open traffic; failing that, the ADD fails (closed). Without a controller (danm without its node agent)
// nothing is enforced here. The controller follows the pods this daemon set up through its sandbox records
// (`localSandboxes`).
import { Effect, Option } from "effect";
import type { NetworkStatusEntry } from "../api/annotations.ts";
import { isNetworkKind } from "../api/danm.ts";
import type { Pod } from "../api/k8s.ts";
import { NetpolController } from "../netpol/controller.ts";
import { NadKind, networkKey, type WorldAttachment } from "../netpol/model.ts";
import type { LocalSandbox } from "../netpol/world.ts";
import type { Fs } from "../ports/filesystem.ts";
import { formatIp, parseIp } from "../net/ip.ts";
import { cniError } from "./errors.ts";
import type { AttachmentPlan } from "./plan.ts";
import { decodeRecord, listRecords, readRecordText, type SandboxRecord } from "./state.ts";

/** One interface as the policy engine sees it, or undefined for one it never looks at (a NAD primary interface). */
function policyAttachment(
  podNamespace: string,
  a: { readonly network: { readonly kind: string; readonly namespace?: string; readonly name: string } },
  ifName: string,
  isDefault: boolean,
  addresses: ReadonlyArray<string>,
): WorldAttachment | undefined {
  const kind = a.network.kind;
  const danm = isNetworkKind(kind);
  if (!danm && (isDefault || kind !== NadKind)) return undefined;
  const ips = addresses.flatMap((text) => {
    const ip = parseIp(text.split("/")[0]);
    return ip ? [formatIp(ip)] : [];
  });
  return {
    network: networkKey(danm ? kind : NadKind, a.network.namespace ?? podNamespace, a.network.name),
    ifName,
    v4: ips.filter((ip) => !ip.includes(":")),
    v6: ips.filter((ip) => ip.includes(":")),
  };
}

const byIfName = (a: WorldAttachment, b: WorldAttachment) => (a.ifName < b.ifName ? -1 : a.ifName > b.ifName ? 1 : 0);

/**
 * The pod's interfaces as the policy engine sees them, the way the agent will later read them from the DanmEps and
 * the network-status annotation (so the ADD's table and the controller's agree): danm networks by kind, NADs but
 * the primary (`default`) one.
 */
export function policyAttachments(
  podNamespace: string,
  plans: ReadonlyArray<AttachmentPlan>,
  statuses: ReadonlyArray<NetworkStatusEntry>,
): ReadonlyArray<WorldAttachment> {
  return plans.flatMap((plan, i) => {
    const status = statuses[i];
    return policyAttachment(podNamespace, plan, plan.ifName, status.default ?? false, status.ips ?? []) ?? [];
  }).sort(byIfName);
}

/** A finished sandbox record as the policy controller's local pod: the same interfaces the ADD programmed. */
export function localSandbox(record: SandboxRecord): LocalSandbox {
  const attachments = record.attachments.flatMap((a) =>
    policyAttachment(record.pod.namespace, a, a.ifName, a.index === 0, a.addresses ?? []) ?? []
  );
  return {
    pod: record.pod,
    netns: record.netns,
    created: record.created,
    attachments: attachments.sort(byIfName),
  };
}

/**
 * This node's pods as the CNI daemon recorded them in `stateDir`: every sandbox whose ADD finished (one still being
 * added is programmed by its ADD). Records are decoded again only when their text changed.
 */
export const localSandboxes = (
  stateDir: string,
  node: string,
): Effect.Effect<ReadonlyArray<LocalSandbox>, never, Fs> => {
  const decoded = new Map<string, { text: string; sandbox: LocalSandbox | undefined }>();
  return Effect.gen(function* () {
    const ids: ReadonlyArray<string> = yield* Effect.orElseSucceed(listRecords(stateDir), () => []);
    const out: LocalSandbox[] = [];
    for (const id of ids) {
      const text = yield* Effect.orElseSucceed(readRecordText(stateDir, id), () => undefined);
      if (text === undefined) continue; // removed meanwhile (DEL)
      let hit = decoded.get(id);
      if (hit?.text !== text) {
        // An unreadable record is skipped (the daemon's own reads log it); a half-written one cannot exist (atomic).
        const record = yield* Effect.orElseSucceed(decodeRecord(text), () => undefined);
        const usable = record !== undefined && record.phase === "ready" && record.node === node;
        decoded.set(id, hit = { text, sandbox: usable ? localSandbox(record) : undefined });
      }
      if (hit.sandbox) out.push(hit.sandbox);
    }
    const present = new Set(ids);
    for (const id of [...decoded.keys()]) if (!present.has(id)) decoded.delete(id);
    return out;
  });
};

/** Programs the new pod's policy table; a CniError when it cannot be (the caller rolls the ADD back). */
export const programPodPolicy = (
  pod: Pod,
  netns: string,
  plans: ReadonlyArray<AttachmentPlan>,
  statuses: ReadonlyArray<NetworkStatusEntry>,
) =>
  Effect.gen(function* () {
    const controller = yield* Effect.serviceOption(NetpolController);
    if (Option.isNone(controller)) return;
    const attachments = policyAttachments(pod.metadata.namespace ?? "", plans, statuses);
    yield* controller.value.programPod({ pod, netns, attachments }).pipe(
      Effect.mapError((e) => cniError(`network policy of pod ${e.pod} could not be programmed`, e.reason)),
    );
  });
