// The SR-IOV backend (NetworkType "sriov", danm-spec §4.8): a VF of the network's device_pool handed to the sriov
// plugin with the config danm generates.
import { problem } from "../../../webhook/problems.ts";
import { StepError } from "../../errors.ts";
import type { BackendSpec } from "../backend_spec.ts";

export interface SriovPlan {
  readonly _tag: "Sriov";
  readonly resource: string | undefined;
  readonly vlan: number | undefined;
  readonly networkId: string;
}

export const sriovSpec: BackendSpec<SriovPlan> = {
  networkTypes: ["sriov"],
  generated: true,
  builtIn: false,
  // Its DanmEp records the VF, and the DPDK stand-in needs the addresses: no start before the reservation.
  ticketed: false,
  endpointAfterInterface: true,
  plan: (spec) => ({
    _tag: "Sriov",
    resource: spec.Options?.device_pool,
    vlan: spec.Options?.vlan,
    networkId: spec.NetworkID ?? "",
  }),
  // V17: the VFs come from device_pool; host_device has no meaning here.
  validate: (net) => {
    const o = net.spec.Options ?? {};
    return [
      ...(o.device_pool ? [] : [
        problem("spec.Options.device_pool", "sriov-device-pool", "is required for NetworkType sriov"),
      ]),
      ...(o.host_device
        ? [
          problem(
            "spec.Options.host_device",
            "sriov-device-pool",
            "must not be set for NetworkType sriov (use device_pool)",
          ),
        ]
        : []),
    ];
  },
  deviceResource: (backend) =>
    backend.resource ?? new StepError({ operation: "allocate a device", reason: "the network has no device_pool" }),
  describe: () => ({ backend: "sriov (generated config)" }),
};
