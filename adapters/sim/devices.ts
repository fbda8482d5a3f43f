// The device plugin of a simulated node: the SR-IOV pools of its scenario annotation (sim.danm.io/sriov-pools), VFs
// handed to a pod as the kubelet's device manager would — as many as its containers request of the resource, once
// per pod — and reported to danm through the PodDevices port, as the kubelet's PodResources API does on a real node.
import { Effect } from "effect";
import { PodResource } from "../../core/api/k8s.ts";
import { DeviceError, type PodDevicesService } from "../../core/ports/pod_devices.ts";
import type { KubeService } from "../../core/ports/kube.ts";
import type { SimNode } from "../../core/sim/scenario.ts";

const quantity = (q: string | number | undefined): number => {
  const n = typeof q === "number" ? q : Number.parseInt(q ?? "0", 10);
  return Number.isInteger(n) && n > 0 ? n : 0;
};

export function simDevicePlugin(node: SimNode, kube: KubeService): PodDevicesService {
  /** `<pod UID>/<resource>` → the VFs the pod was given. */
  const given = new Map<string, ReadonlyArray<string>>();
  const used = new Set<string>();
  const poolOf = (deviceId: string) => node.devicePools.find((p) => p.deviceIds.includes(deviceId));
  return {
    devices: (pod, resource) =>
      Effect.gen(function* () {
        const label = `${pod.namespace}/${pod.name}`;
        const p = yield* kube.get(PodResource, pod.name, { namespace: pod.namespace }).pipe(
          Effect.mapError((e) => new DeviceError({ pod: label, resource, reason: e.message })),
        );
        const key = `${p.metadata.uid}/${resource}`;
        const known = given.get(key);
        if (known) return known;
        const want = p.spec.containers.reduce(
          (n, c) => n + quantity(c.resources?.limits?.[resource] ?? c.resources?.requests?.[resource]),
          0,
        );
        const pool = node.devicePools.find((d) => d.resource === resource);
        if (want > 0 && !pool) {
          return yield* new DeviceError({
            pod: label,
            resource,
            reason: `node ${node.name} has no such device pool (a real kubelet would not admit the pod)`,
          });
        }
        const free = (pool?.deviceIds ?? []).filter((id) => !used.has(id)).slice(0, want);
        if (free.length < want) {
          return yield* new DeviceError({
            pod: label,
            resource,
            reason: `node ${node.name} has ${free.length} free VF(s) of ${resource}, the pod requests ${want}`,
          });
        }
        for (const id of free) used.add(id);
        given.set(key, free);
        return free;
      }),
    physicalFunction: (deviceId) => {
      const pool = poolOf(deviceId);
      return pool
        ? Effect.succeed(pool.pf)
        : Effect.fail(new DeviceError({ pod: "-", resource: deviceId, reason: `not a VF of node ${node.name}` }));
    },
    // Simulated VFs are kernel netdevs (a DPDK-bound VF would have no interface for the simulated sriov plugin).
    driver: (deviceId) =>
      poolOf(deviceId)
        ? Effect.succeed("iavf")
        : Effect.fail(new DeviceError({ pod: "-", resource: deviceId, reason: `not a VF of node ${node.name}` })),
  };
}
