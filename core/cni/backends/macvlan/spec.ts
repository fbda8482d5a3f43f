// The MACVLAN backend (NetworkType "macvlan", danm-spec §4.4): the macvlan plugin as a delegate, with the config
// danm generates on the network's parent.
import { type ParentDevice, parentOf } from "../../attach/parent.ts";
import type { BackendSpec } from "../backend_spec.ts";
import { devicesExclusive, noDevicePool } from "../validate.ts";

export interface MacvlanPlan {
  readonly _tag: "Macvlan";
  readonly parent: ParentDevice | undefined;
  readonly networkId: string;
}

export const macvlanSpec: BackendSpec<MacvlanPlan> = {
  networkTypes: ["macvlan"],
  generated: true,
  builtIn: false,
  ticketed: true,
  endpointAfterInterface: false,
  plan: (spec) => ({ _tag: "Macvlan", parent: parentOf(spec), networkId: spec.NetworkID ?? "" }),
  validate: devicesExclusive,
  deviceResource: noDevicePool,
  describe: (backend) => ({
    backend: "macvlan (generated config)",
    ...(backend.parent ? { parent: backend.parent.name } : {}),
  }),
};
