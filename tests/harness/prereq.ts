// Debian packages the harness relies on, installed through apt when missing (root only).
import { have, run } from "./proc.ts";

/** Package per command it provides. */
export const aptPackages: Record<string, string> = {
  "qemu-system-x86_64": "qemu-system-x86",
  busybox: "busybox-static",
  depmod: "kmod",
  cpio: "cpio",
  ping: "iputils-ping",
  ip: "iproute2",
  openssl: "openssl",
  unshare: "util-linux",
  nsenter: "util-linux",
  // A real node (tests/harness/node): the container runtime and what kube-proxy's nftables mode runs.
  containerd: "containerd",
  "containerd-shim-runc-v2": "containerd",
  ctr: "containerd",
  runc: "runc",
  nft: "nftables",
  // bench:netpol's per-packet cost, and its smoke run in the integration tier.
  iperf3: "iperf3",
};

export async function ensureAptPackages(commands: ReadonlyArray<string>, log: (s: string) => void): Promise<void> {
  const missing = new Set<string>();
  for (const c of commands) if (!(await have(c))) missing.add(aptPackages[c]);
  if (missing.size === 0) return;
  if (Deno.uid() !== 0) throw new Error(`missing packages ${[...missing].join(" ")} and not root to install them`);
  log(`installing ${[...missing].join(" ")} from apt`);
  const env = { ...Deno.env.toObject(), DEBIAN_FRONTEND: "noninteractive" };
  await run(["apt-get", "update", "-q"], { env, inheritStderr: true }).catch(() => {});
  await run(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...missing], { env, inheritStderr: true });
}
