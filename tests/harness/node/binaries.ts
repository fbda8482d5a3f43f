// What a real node needs besides the control plane: the Kubernetes node binaries (built from the Go tools module,
// cached like kube-apiserver), containerd + runc + nft from Debian, the pause image and danm's own images. Each is
// built or installed once and cached; any failure throws with the reason.
import { buildDanmImages, type BuiltImages } from "../../../k8s/images/build.ts";
import { archiveOciLayout, writeOciLayout } from "../../../k8s/images/oci.ts";
import { ensureAptPackages } from "../prereq.ts";
import { cacheRoot, repoRoot, run } from "../proc.ts";

/** Commands a node runs, by Debian package (tests/harness/prereq.ts installs the missing ones). */
export const nodeCommands = [
  "containerd",
  "containerd-shim-runc-v2",
  "ctr",
  "runc",
  "nft",
  "busybox",
  "nsenter",
  "unshare",
];

export const pauseImage = "localhost/pause:3.10";

export interface NodeBinaries {
  /** kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl, crictl, pause. */
  readonly dir: string;
  /** The OCI archive of the pause image. */
  readonly pauseArchive: string;
  readonly danm: BuiltImages;
}

/** Builds (or finds in the cache) the node binaries; returns their directory. */
export async function ensureNodeBinaries(): Promise<string> {
  const out = await run([`${repoRoot}/tests/tools/k8s/build.sh`, "node"], { inheritStderr: true });
  return out.trim().split("\n").pop()!;
}

/** The pause image (the sandbox's `/pause`, user 65535) as an OCI archive, cached by the binary's content. */
export async function ensurePauseImage(binDir: string): Promise<string> {
  const src = (await run(["sha256sum", `${binDir}/pause`])).slice(0, 16);
  const archive = `${cacheRoot()}/images/pause-${src}.tar`;
  if (await Deno.stat(archive).then(() => true, () => false)) return archive;
  await Deno.mkdir(`${cacheRoot()}/images`, { recursive: true });
  const work = await Deno.makeTempDir({ dir: `${cacheRoot()}/images`, prefix: ".pause-" });
  try {
    await Deno.mkdir(`${work}/root`);
    await Deno.copyFile(`${binDir}/pause`, `${work}/root/pause`);
    await Deno.chmod(`${work}/root/pause`, 0o755);
    await writeOciLayout(`${work}/layout`, [{
      ref: pauseImage,
      layers: [{ dir: `${work}/root` }],
      config: { user: "65535:65535", env: [], entrypoint: ["/pause"] },
    }]);
    await archiveOciLayout(`${work}/layout`, `${work}/pause.tar`);
    await Deno.rename(`${work}/pause.tar`, archive);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return archive;
}

/**
 * Everything a real-node cluster needs on this machine, built or installed; logs what took time. `offline` (inside
 * a private network namespace) only finds what was prepared: a build there could not download anything.
 */
export async function prepareNodeBinaries(
  log: (line: string) => void,
  opts: { readonly offline?: boolean } = {},
): Promise<NodeBinaries> {
  if (!opts.offline) await ensureAptPackages(nodeCommands, log);
  let t = Date.now();
  const dir = await ensureNodeBinaries();
  log(`kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl, crictl in ${dir} (${secs(t)})`);
  t = Date.now();
  const pauseArchive = await ensurePauseImage(dir);
  const danm = await buildDanmImages({ outDir: `${cacheRoot()}/images/danm`, log, offline: opts.offline ?? false });
  log(`images: ${pauseImage}, ${Object.values(danm.refs).join(", ")} (${secs(t)})`);
  return { dir, pauseArchive, danm };
}

const secs = (since: number) => `${((Date.now() - since) / 1000).toFixed(0)}s`;
