// The built-in IPVLAN backend (NetworkType "" or "ipvlan", danm-spec §4.7): danm creates the interface itself on
// the network's parent, with the addresses its IPAM reserved.
import { type ParentDevice, parentOf } from "../../attach/parent.ts";
import type { BackendSpec } from "../backend_spec.ts";
import { devicesExclusive, noDevicePool } from "../validate.ts";

export interface IpvlanPlan {
  readonly _tag: "Ipvlan";
  readonly parent: ParentDevice | undefined;
}

export const ipvlanSpec: BackendSpec<IpvlanPlan> = {
  networkTypes: ["", "ipvlan"],
  generated: true,
  builtIn: true,
  ticketed: false,
  endpointAfterInterface: false,
  plan: (spec) => ({ _tag: "Ipvlan", parent: parentOf(spec) }),
  validate: devicesExclusive,
  deviceResource: noDevicePool,
  describe: (backend) => ({
    backend: "ipvlan (built in)",
    ...(backend.parent ? { parent: backend.parent.name } : {}),
  }),
};
