// Device-plugin devices for `device_pool` networks (SR-IOV, danm-spec §4.8): DANM asks the kubelet PodResources
// gRPC API (/var/lib/kubelet/pod-resources/kubelet.sock) which device IDs the pod got for a resource, and pops one
// per interface from the end of that list; the PF behind a VF comes from sysfs.
//
// This port is what the CNI needs of that; adapters/kubelet/podresources.ts is the live implementation the node
// daemon runs with. Without one (in-memory worlds that model no device plugin) every lookup is refused.
import { Context, Effect, Schema } from "effect";

/** Device-plugin (SR-IOV) devices of a pod could not be determined. */
export class DeviceError extends Schema.TaggedError<DeviceError>()("DeviceError", {
  pod: Schema.String,
  resource: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `devices of pod ${this.pod} for resource ${this.resource}: ${this.reason}`;
  }
}

export interface PodDevicesService {
  /** Device IDs (PCI addresses) allocated to the pod for `resource`, in the kubelet's order. */
  readonly devices: (
    pod: { readonly namespace: string; readonly name: string },
    resource: string,
  ) => Effect.Effect<ReadonlyArray<string>, DeviceError>;
  /** The PF netdev name of a VF (DANM: sysfs physfn/net). */
  readonly physicalFunction: (deviceId: string) => Effect.Effect<string, DeviceError>;
  /** The kernel driver the device is bound to (sysfs driver link); undefined when none is. */
  readonly driver: (deviceId: string) => Effect.Effect<string | undefined, DeviceError>;
}

export class PodDevices
  extends Context.Service<PodDevices, PodDevicesService>()("danm/core/ports/pod_devices/PodDevices") {}

const unavailable = (what: string) => `${what} needs the kubelet PodResources API, and none is configured here`;

/** The default: every device_pool attachment fails with a clear error instead of a half-configured VF. */
export const noPodDevices: PodDevicesService = {
  devices: (pod, resource) =>
    Effect.fail(
      new DeviceError({ pod: `${pod.namespace}/${pod.name}`, resource, reason: unavailable("device allocation") }),
    ),
  physicalFunction: (deviceId) =>
    Effect.fail(new DeviceError({ pod: "-", resource: deviceId, reason: unavailable("PF lookup") })),
  driver: (deviceId) =>
    Effect.fail(new DeviceError({ pod: "-", resource: deviceId, reason: unavailable("driver lookup") })),
};
