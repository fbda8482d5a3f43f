// Spec parts several backends share.
import type { Network } from "../../api/danm.ts";
import { type Problem, problem } from "../../webhook/problems.ts";

/** host_device and device_pool exclude each other on a network whose backend takes no device from a pool (V17). */
export const devicesExclusive = (net: Network): ReadonlyArray<Problem> => {
  const o = net.spec.Options ?? {};
  return o.host_device && o.device_pool
    ? [problem("spec.Options.device_pool", "device-exclusive", "host_device and device_pool are mutually exclusive")]
    : [];
};

/** For backends without a device pool. */
export const noDevicePool = (): undefined => undefined;
