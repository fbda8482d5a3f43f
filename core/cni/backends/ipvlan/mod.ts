// The built-in IPVLAN backend at work: the interface made by create.ts; a DEL without a record deletes the link.
import { Effect } from "effect";
import type { Result } from "../../protocol.ts";
import type { Backend } from "../backend.ts";
import { createIpvlan } from "./create.ts";
import { type IpvlanPlan, ipvlanSpec } from "./spec.ts";

export const ipvlan: Backend<IpvlanPlan> = {
  ...ipvlanSpec,
  create: ({ add, plan, progress }, backend) =>
    Effect.gen(function* () {
      const out = yield* createIpvlan({
        host: add.host,
        pod: add.podNs,
        podRef: add.podNsRef,
        ifName: plan.ifName,
        parent: backend.parent,
        mtu: plan.mtu,
        addresses: progress.addresses,
      });
      const result: Result = {
        interfaces: [{
          name: plan.ifName,
          ...(out.mac ? { mac: out.mac } : {}),
          sandbox: add.inv.netns,
          mtu: out.mtu,
        }],
        ips: progress.addresses.map((address) => ({ address, interface: 0 })),
        routes: [],
      };
      return { result };
    }),
  recover: () => Effect.succeed({ backend: "ipvlan" }),
};
