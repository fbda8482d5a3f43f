// The static delegate (every NetworkType no other backend names: flannel, calico, bridge …, danm-spec §4.4): the
// plugin configured by <cniDir>/<NetworkID>.conf (or .conflist); it keeps its own IPAM unless the pod asks danm's
// (core/podnetworks/addressing.ts).
import type { NetworkSpec } from "../../../api/danm.ts";
import type { BackendSpec } from "../backend_spec.ts";
import { devicesExclusive, noDevicePool } from "../validate.ts";

export interface StaticPlan {
  readonly _tag: "Static";
  readonly networkId: string;
  readonly networkType: string;
}

export const planStatic = (spec: NetworkSpec): StaticPlan => ({
  _tag: "Static",
  networkId: spec.NetworkID ?? "",
  networkType: spec.NetworkType ?? "",
});

export const staticSpec: BackendSpec<StaticPlan> = {
  // kinds.ts gives it every type no other backend names.
  networkTypes: [],
  generated: false,
  builtIn: false,
  ticketed: true,
  endpointAfterInterface: false,
  plan: planStatic,
  validate: devicesExclusive,
  deviceResource: noDevicePool,
  describe: (backend) => ({
    backend: `${backend.networkType} (static delegate ${backend.networkId}.conf/.conflist)`,
  }),
};
