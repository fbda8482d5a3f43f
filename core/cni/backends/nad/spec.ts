// NetworkAttachmentDefinitions (NPWG, selected by k8s.v1.cni.cncf.io/networks): the delegate configured by the
// NAD's spec.config. Not a danm network: no NetworkType, no DanmEp, no admission rules of danm's.
import type { BackendSpec } from "../backend_spec.ts";
import { noDevicePool } from "../validate.ts";

export interface NadPlan {
  readonly _tag: "Nad";
  readonly config: string | undefined;
}

export const nadPlan = (config: string | undefined): NadPlan => ({ _tag: "Nad", config });

export const nadSpec: BackendSpec<NadPlan> = {
  networkTypes: [],
  generated: false,
  builtIn: false,
  ticketed: true,
  endpointAfterInterface: false,
  plan: undefined,
  validate: () => [],
  deviceResource: noDevicePool,
  describe: () => ({ backend: "NetworkAttachmentDefinition" }),
};
