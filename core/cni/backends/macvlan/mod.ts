// The MACVLAN backend at work: the macvlan plugin with the config danm generates — master = the network's parent,
// MTU from the network or the parent (DANM: a fixed 1500).
import { Effect } from "effect";
import { type DelegateChain, singlePluginChain, withIpam } from "../../attach/delegate.ts";
import { findParent } from "../../attach/parent.ts";
import { StepError } from "../../errors.ts";
import { fakeIpamSection } from "../../addresses.ts";
import { latestVersion } from "../../protocol.ts";
import type { Backend } from "../backend.ts";
import { runDelegate } from "../common.ts";
import { type MacvlanPlan, macvlanSpec } from "./spec.ts";

/** DANM's generated MACVLAN config, with the MTU from the network or the parent instead of a fixed 1500. */
export function macvlanConfig(o: {
  readonly networkId: string;
  readonly master: string;
  readonly mtu: number | undefined;
  readonly cniVersion: string;
}): DelegateChain {
  return singlePluginChain("generated macvlan", {
    cniVersion: o.cniVersion,
    name: o.networkId,
    type: "macvlan",
    master: o.master,
    mode: "bridge",
    ...(o.mtu === undefined ? {} : { mtu: o.mtu }),
  });
}

export const macvlan: Backend<MacvlanPlan> = {
  ...macvlanSpec,
  create: (ctx, backend) =>
    Effect.gen(function* () {
      if (!backend.parent) {
        return yield* new StepError({
          operation: "choose the macvlan master",
          reason: "the network has neither host_device, vlan nor vxlan",
        });
      }
      const parent = yield* findParent(ctx.add.host, backend.parent);
      return yield* runDelegate(
        ctx,
        macvlanConfig({
          networkId: backend.networkId,
          master: backend.parent.name,
          mtu: ctx.plan.mtu ?? parent.mtu,
          cniVersion: ctx.add.conf.version,
        }),
      );
    }),
  // The config ADD generated, with an empty fakeipam section (its DEL needs none of the addresses).
  recover: (backend) =>
    Effect.succeed({
      backend: "delegate",
      delegate: withIpam(
        macvlanConfig({
          networkId: backend.networkId,
          master: backend.parent?.name ?? "",
          mtu: undefined,
          cniVersion: latestVersion,
        }),
        fakeIpamSection([]),
      ),
    }),
};
