// DanmEps (one per interface on a danm network, danm-spec §2.4) and the pod's NPWG network-status annotation.
//
// Labels: the pod's labels (svcwatcher selects on them) plus three of ours under `cni.danm.io/`: the node and the
// sandbox (hashed: sandbox IDs are longer than a label value may be) so a node finds its sandboxes' DanmEps
// through its label-selected informer instead of DANM's cluster-wide list per DEL, and the pod UID (stale
// DanmEps of an earlier sandbox of the same pod).
import { createHash } from "node:crypto";
import { Effect } from "effect";
import { encodeNetworkStatus, NetworkStatusAnnotation, type NetworkStatusEntry } from "../api/annotations.ts";
import { type DanmEp, DanmEpResource, DanmEpSystemLabelPrefix, type NetworkKind } from "../api/danm.ts";
import { type Pod, PodResource } from "../api/k8s.ts";
import { Kube, type KubeError } from "../ports/kube.ts";

export const EpLabels = {
  node: `${DanmEpSystemLabelPrefix}node`,
  sandbox: `${DanmEpSystemLabelPrefix}sandbox`,
  podUid: `${DanmEpSystemLabelPrefix}pod-uid`,
} as const;

const hash = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 40);

/** `s` when it is a valid label value, else a hash of it. */
export const labelValue = (s: string): string =>
  /^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$/.test(s) ? s : `h${hash(s)}`;

export const sandboxLabel = (containerId: string): string => hash(containerId);

export const nodeSelector = (node: string): string => `${EpLabels.node}=${labelValue(node)}`;

export interface EndpointInput {
  readonly name: string;
  readonly pod: Pod;
  readonly node: string;
  readonly host: string;
  readonly containerId: string;
  readonly netns: string;
  readonly network: { readonly kind: NetworkKind; readonly name: string };
  readonly networkType: string;
  readonly ifName: string;
  /** "10.0.0.5/24", "none" or "" as DANM records them. */
  readonly address: string;
  readonly address6: string;
  readonly mac?: string;
  readonly mtu?: number;
  readonly device?: string;
  readonly proutes: Readonly<Record<string, string>>;
  readonly proutes6: Readonly<Record<string, string>>;
}

export function buildEndpoint(i: EndpointInput): DanmEp {
  const podUid = i.pod.metadata.uid ?? "";
  return {
    apiVersion: "danm.io/v1",
    kind: "DanmEp",
    metadata: {
      name: i.name,
      namespace: i.pod.metadata.namespace ?? "",
      // Owned by the pod: the Kubernetes garbage collector deletes the DanmEps of a pod that is gone even where no
      // node agent is left to (a node removed for good). No blockOwnerDeletion: a pod's deletion never waits on them.
      ...(podUid
        ? { ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: i.pod.metadata.name ?? "", uid: podUid }] }
        : {}),
      labels: {
        ...(i.pod.metadata.labels ?? {}),
        [EpLabels.node]: labelValue(i.node),
        [EpLabels.sandbox]: sandboxLabel(i.containerId),
        [EpLabels.podUid]: labelValue(podUid),
      },
    },
    spec: {
      NetworkName: i.network.name,
      NetworkType: i.networkType,
      EndpointID: i.name,
      Interface: {
        Name: i.ifName,
        Address: i.address,
        AddressIPv6: i.address6,
        ...(i.mac ? { MacAddress: i.mac } : {}),
        proutes: i.proutes,
        proutes6: i.proutes6,
        ...(i.device ? { DeviceID: i.device } : {}),
        ...(i.mtu !== undefined && i.mtu >= 68 && i.mtu <= 65535 ? { Mtu: i.mtu } : {}),
      },
      Host: i.host,
      Pod: i.pod.metadata.name ?? "",
      PodUID: podUid,
      CID: i.containerId,
      netns: i.netns,
      apiType: i.network.kind,
    },
  };
}

export const createEndpoint = (ep: DanmEp): Effect.Effect<DanmEp, KubeError, Kube> =>
  Effect.flatMap(Kube, (kube) => kube.create(DanmEpResource, ep));

/** Deletes a DanmEp; one that is already gone is fine. */
export const deleteEndpoint = (namespace: string, name: string): Effect.Effect<void, KubeError, Kube> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    yield* kube.delete(DanmEpResource, name, { namespace }).pipe(
      Effect.catchTag("KubeNotFound", () => Effect.void),
      Effect.asVoid,
    );
  });

/** The DanmEps of a sandbox straight from the apiserver (namespace known: one namespace, else all). */
export const listSandboxEndpoints = (containerId: string, namespace?: string) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const byLabel = yield* kube.list(DanmEpResource, {
      labelSelector: `${EpLabels.sandbox}=${sandboxLabel(containerId)}`,
      ...(namespace ? { namespace } : {}),
    });
    if (byLabel.items.length > 0 || !namespace) return byLabel.items.filter((e) => e.spec.CID === containerId);
    // Labels are not ours alone (a controller copying pod labels may drop them): fall back to the CID in the
    // pod's namespace, which is still a bounded list, never DANM's cluster-wide one.
    const all = yield* kube.list(DanmEpResource, { namespace });
    return all.items.filter((e) => e.spec.CID === containerId);
  });

/** Writes the pod's network-status annotation (merge patch, so nothing else of the pod is touched). */
export const patchNetworkStatus = (pod: Pod, entries: ReadonlyArray<NetworkStatusEntry>) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const value = yield* encodeNetworkStatus(entries);
    yield* kube.patch(PodResource, pod.metadata.name ?? "", {
      type: "merge",
      patch: { metadata: { annotations: { [NetworkStatusAnnotation]: value } } },
    }, { namespace: pod.metadata.namespace ?? "" });
  });
