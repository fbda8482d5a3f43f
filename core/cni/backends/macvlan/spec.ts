// The built-in MACVLAN backend (NetworkType "macvlan", danm-spec §4.4): danm creates the bridge-mode macvlan on the
// network's parent itself, as the reference macvlan plugin did with the config DANM generated for it.
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
  builtIn: true,
  ticketed: false,
  endpointAfterInterface: false,
  plan: (spec) => ({ _tag: "Macvlan", parent: parentOf(spec), networkId: spec.NetworkID ?? "" }),
  validate: devicesExclusive,
  deviceResource: noDevicePool,
  describe: (backend) => ({
    backend: "macvlan (built in)",
    ...(backend.parent ? { parent: backend.parent.name } : {}),
  }),
};
