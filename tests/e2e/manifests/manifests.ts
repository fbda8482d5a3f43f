// The e2e's manifests (this directory) as the tests that run them read them: the fake-kubelet e2e
// (tests/e2e/stack_test.ts) and the same manifests on real nodes (tests/node/node_test.ts).
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { assert } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";
import type { Json } from "../../harness/stack.ts";

export const manifests = `${repoRoot}/tests/e2e/manifests`;
export const NS = "danm-e2e";

/** A manifest file's objects. */
export const load = (file: string): Json[] =>
  (yaml.loadAll(Deno.readTextFileSync(`${manifests}/${file}`)) as unknown[]).filter(
    (d): d is Json => typeof d === "object" && d !== null,
  );

/** The secondary networks by interface prefix (networks.yaml), and the default network on eth0. */
export const networks = {
  eth: { label: "ClusterNetwork default", subnet: "10.89.0.", kind: "veth" },
  mv: { label: `DanmNet ${NS}/mv`, subnet: "10.89.1.", kind: "macvlan" },
  br: { label: `DanmNet ${NS}/br`, subnet: "10.89.2.", kind: "veth" },
  vx: { label: `DanmNet ${NS}/vx`, subnet: "10.89.3.", kind: "macvlan" },
  tn: { label: `TenantNetwork ${NS}/tn`, subnet: "10.89.4.", kind: "macvlan" },
} as const;
export type Net = keyof typeof networks;
export const netOf = (ifname: string): Net => {
  const prefix = ifname.replace(/\d+$/, "");
  assert(prefix in networks, `unexpected interface ${ifname}`);
  return prefix as Net;
};

/** Runs `f` over `items`, `width` at a time. */
export async function pool<T>(items: ReadonlyArray<T>, width: number, f: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await f(items[next++]);
  }));
}

export const bare = (cidr: string) => cidr.split("/")[0];
