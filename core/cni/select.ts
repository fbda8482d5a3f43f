// Turning a failed network selection into one CNI error. core/podnetworks/selection.ts stops at the first problem (the
// webhook needs only one); a pod that names several missing or forbidden networks should learn about all of them in
// one failed ADD (danm-spec §9 row 24), so the danm annotation's entries are checked again here, each on its own.
import { Effect } from "effect";
import type { ClusterNetwork, Network } from "../api/danm.ts";
import {
  allowedTenantsProblem,
  type DirectoryError,
  namespaceLocalProblem,
  NetworkDirectory,
  type PodRef,
  podSelection,
  type SelectionError,
} from "../podnetworks/selection.ts";
import { CniError, ErrorCode } from "./protocol.ts";
import { describeNetwork } from "./plan.ts";

export const explainSelection = (
  pod: PodRef,
  podLabel: string,
  e: SelectionError,
): Effect.Effect<CniError, never, NetworkDirectory> =>
  Effect.gen(function* () {
    const fallback = new CniError({
      code: ErrorCode.invalidNetworkConfig,
      msg: `pod ${podLabel}: cannot tell which networks to attach`,
      details: e.message,
    });
    const sel = yield* Effect.result(podSelection(pod.annotations));
    if (sel._tag === "Failure" || sel.success._tag !== "Danm") return fallback;
    const dir = yield* NetworkDirectory;
    const { requests, annotation } = sel.success;
    const problems: string[] = [];
    const networks: string[] = [];
    for (const [entry, r] of requests.entries()) {
      const ns = r.network.kind === "ClusterNetwork" ? undefined : pod.namespace;
      const label = describeNetwork({ kind: r.network.kind, name: r.network.name, ...(ns ? { namespace: ns } : {}) });
      const lookup: Effect.Effect<Network | undefined, DirectoryError> = r.network.kind === "DanmNet"
        ? dir.danmNet(pod.namespace, r.network.name)
        : r.network.kind === "TenantNetwork"
        ? dir.tenantNetwork(pod.namespace, r.network.name)
        : dir.clusterNetwork(r.network.name);
      const crossNamespace = namespaceLocalProblem(r.network.kind, r.network.name, pod.namespace);
      const found = crossNamespace ? undefined : yield* Effect.result(lookup);
      const reason = found === undefined
        ? crossNamespace
        : found._tag === "Failure"
        ? found.failure.message
        : found.success === undefined
        ? "does not exist"
        : r.network.kind === "ClusterNetwork"
        ? allowedTenantsProblem(found.success as ClusterNetwork, pod.namespace)
        : undefined;
      if (reason !== undefined) {
        problems.push(`network ${label} (annotation ${annotation}, entry ${entry}): ${reason}`);
        networks.push(label);
      }
    }
    if (problems.length === 0) return fallback;
    return new CniError({
      code: ErrorCode.attachmentFailed,
      msg: `pod ${podLabel}: ${problems.length} of ${requests.length} network(s) cannot be attached (${
        networks.join(", ")
      })`,
      details: problems.join("\n"),
    });
  });
