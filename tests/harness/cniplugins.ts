// The reference CNI plugins (containernetworking/plugins) as delegates and comparators, built from the Go
// module proxy into a versioned cache directory.
import { cacheRoot, run } from "./proc.ts";

export const cniPluginsVersion = "v1.10.0";

const plugins = [
  "main/bridge",
  "main/macvlan",
  "main/ipvlan",
  "main/vlan",
  "main/ptp",
  "main/loopback",
  "ipam/host-local",
  "ipam/static",
  "meta/tuning",
  "meta/sbr",
];

/** Returns the directory holding the plugin binaries, building them on first use. */
export async function ensureCniPlugins(): Promise<string> {
  const dir = `${cacheRoot()}/cni-plugins-${cniPluginsVersion}`;
  const names = plugins.map((p) => p.split("/")[1]);
  const present = await Promise.all(names.map((n) => Deno.stat(`${dir}/${n}`).then(() => true, () => false)));
  if (present.every(Boolean)) return dir;
  const tmp = `${dir}.tmp-${Deno.pid}`;
  await Deno.mkdir(tmp, { recursive: true });
  await run([
    "go",
    "install",
    ...plugins.map((p) => `github.com/containernetworking/plugins/plugins/${p}@${cniPluginsVersion}`),
  ], {
    env: { ...Deno.env.toObject(), GOBIN: tmp, CGO_ENABLED: "0", GOFLAGS: "-trimpath" },
    inheritStderr: true,
  });
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, dir);
  return dir;
}
