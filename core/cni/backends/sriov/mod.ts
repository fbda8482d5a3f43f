// The SR-IOV backend at work: the VF of the network's device_pool the kubelet's device manager assigned to the pod,
// handed to the sriov plugin with the config danm generates; a VF bound to a DPDK driver gets danm's kernel-visible
// stand-in (dpdk.ts) after the delegate.
import { Effect } from "effect";
import { PodDevices } from "../../../ports/pod_devices.ts";
import { type DelegateChain, singlePluginChain } from "../../attach/delegate.ts";
import { step, StepError } from "../../errors.ts";
import type { Backend } from "../backend.ts";
import { runDelegate } from "../common.ts";
import { createDpdkInterface, dpdkDrivers } from "./dpdk.ts";
import { type SriovPlan, sriovSpec } from "./spec.ts";

/** DANM's generated SR-IOV config. */
export function sriovConfig(o: {
  readonly networkId: string;
  readonly master: string;
  readonly deviceId: string;
  readonly vlan: number | undefined;
  readonly cniVersion: string;
}): DelegateChain {
  return singlePluginChain("generated sriov", {
    cniVersion: o.cniVersion,
    name: o.networkId,
    type: "sriov",
    master: o.master,
    deviceID: o.deviceId,
    ...(o.vlan === undefined ? {} : { vlan: o.vlan }),
  });
}

export const sriov: Backend<SriovPlan> = {
  ...sriovSpec,
  create: (ctx, backend) =>
    Effect.gen(function* () {
      const assigned = ctx.add.devices.get(ctx.plan.index);
      if (assigned === undefined || assigned instanceof StepError) {
        return yield* (assigned ?? new StepError({ operation: "allocate a device", reason: "none assigned" }));
      }
      const devices = yield* PodDevices;
      const master = yield* devices.physicalFunction(assigned).pipe(step(`find the PF of ${assigned}`));
      const driver = yield* devices.driver(assigned).pipe(step(`find the driver of ${assigned}`));
      const created = yield* runDelegate(
        ctx,
        sriovConfig({
          networkId: backend.networkId,
          master,
          deviceId: assigned,
          vlan: backend.vlan,
          cniVersion: ctx.add.conf.version,
        }),
      );
      if (driver !== undefined && dpdkDrivers.has(driver)) {
        yield* createDpdkInterface({
          pod: ctx.add.podNs,
          ifName: ctx.plan.ifName,
          epName: ctx.epName,
          vlan: backend.vlan,
          pci: assigned,
          mac: created.result.interfaces.find((i) => i.name === ctx.plan.ifName)?.mac,
          addresses: ctx.progress.addresses,
          created: ctx.progress.ownLinks,
        });
      }
      return { ...created, device: assigned };
    }),
  // The VF cannot be identified any more: DEL frees what danm holds.
  recover: () => Effect.succeed({ backend: "unknown" }),
};
