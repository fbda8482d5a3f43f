// The built-in MACVLAN backend at work: the interface made by create.ts, and the result the reference macvlan plugin
// gave for it (the interface with its MAC and sandbox, no MTU; each address on it); a DEL without a record deletes
// the link; CHECK also verifies its kind and mode, as the plugin's CHECK did.
import { Effect } from "effect";
import type { Result } from "../../protocol.ts";
import type { Backend } from "../backend.ts";
import { createMacvlan, requestedMac } from "./create.ts";
import { type MacvlanPlan, macvlanSpec } from "./spec.ts";

export const macvlan: Backend<MacvlanPlan> = {
  ...macvlanSpec,
  create: ({ add, plan, progress }, backend) =>
    Effect.gen(function* () {
      const out = yield* createMacvlan({
        host: add.host,
        pod: add.podNs,
        podRef: add.podNsRef,
        ifName: plan.ifName,
        parent: backend.parent,
        mtu: plan.mtu,
        mac: yield* requestedMac(add.inv.args, plan.cniArgs),
        addresses: progress.addresses,
      });
      const result: Result = {
        interfaces: [{ name: plan.ifName, ...(out.mac ? { mac: out.mac } : {}), sandbox: add.inv.netns }],
        ips: progress.addresses.map((address) => ({ address, interface: 0 })),
        routes: [],
      };
      return { result };
    }),
  recover: () => Effect.succeed({ backend: "ipvlan" }),
  // What the macvlan plugin's own CHECK verified of the link when it was a delegate (its kind and mode).
  checkLink: (link) =>
    link.kind !== "macvlan"
      ? `is a ${link.kind} link, not a macvlan`
      : link.macvlan?.mode !== "bridge"
      ? `is a macvlan in ${link.macvlan?.mode ?? "an unknown"} mode, not bridge`
      : undefined,
};
