// MultiNetworkPolicy in the CNI ADD (#22): when the node agent's policy controller runs in this process (the CNI
// daemon lives in the node agent), the pod's table is programmed before the ADD reports success, so a new pod never
// runs with open traffic; failing that, the ADD fails (closed). Without a controller (danm without its node agent)
// nothing is enforced here.
import { Effect, Option } from "effect";
import type { NetworkStatusEntry } from "../api/annotations.ts";
import { isNetworkKind } from "../api/danm.ts";
import type { Pod } from "../api/k8s.ts";
import { NetpolController } from "../netpol/controller.ts";
import { NadKind, networkKey, type WorldAttachment } from "../netpol/model.ts";
import { formatIp, parseIp } from "../net/ip.ts";
import { cniError } from "./errors.ts";
import type { AttachmentPlan } from "./plan.ts";

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
  const out: WorldAttachment[] = [];
  for (const [i, plan] of plans.entries()) {
    const status = statuses[i];
    const kind = plan.network.kind;
    const danm = isNetworkKind(kind);
    if (!danm && (status.default || kind !== NadKind)) continue;
    const ips = (status.ips ?? []).flatMap((text) => {
      const ip = parseIp(text.split("/")[0]);
      return ip ? [formatIp(ip)] : [];
    });
    out.push({
      network: networkKey(danm ? kind : NadKind, plan.network.namespace ?? podNamespace, plan.network.name),
      ifName: plan.ifName,
      v4: ips.filter((ip) => !ip.includes(":")),
      v6: ips.filter((ip) => ip.includes(":")),
    });
  }
  return out.sort((a, b) => (a.ifName < b.ifName ? -1 : a.ifName > b.ifName ? 1 : 0));
}

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
