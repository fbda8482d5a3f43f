// What a real node needs besides the control plane: the Kubernetes node binaries (built from the Go tools module,
// cached like kube-apiserver), containerd + runc + nft from Debian, the pause image and danm's own images. Each is
// built or installed once and cached; any failure throws with the reason.
import { buildDanmImages, type BuiltImages, leaseTag } from "../../../k8s/images/build.ts";
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

/** Where prepareNodeBinaries hands what it prepared (JSON NodeBinaries) to the processes it starts. */
export const preparedEnv = "DANM_NODE_PREPARED";

/**
 * Everything a real-node cluster needs on this machine, built or installed; logs what took time. Needs the network
 * (apt, the Go module proxy, npm): call it before moving into a private network namespace. What it prepared is handed
 * to every process started after it through the environment (`DANM_NODE_PREPARED`), and the danm images' tag is
 * leased to this process (k8s/images/build.ts leaseTag) until it exits, so no other worktree's build prunes it.
 * Started by such a process (the variable set), it returns what that one prepared.
 */
export async function prepareNodeBinaries(log: (line: string) => void): Promise<NodeBinaries> {
  if (Deno.env.get(preparedEnv)) {
    // Started by a run that prepared them (e.g. `sim --real --kubelet` inside the node tier, whose sources may have
    // changed since): exactly those, and nothing built here.
    const binaries = await preparedNodeBinaries();
    log(`using what was prepared before (${preparedEnv}): ${binaries.dir}, danm images ${binaries.danm.tag}`);
    return binaries;
  }
  await ensureAptPackages(nodeCommands, log);
  let t = Date.now();
  const dir = await ensureNodeBinaries();
  log(`kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl, crictl in ${dir} (${secs(t)})`);
  t = Date.now();
  const pauseArchive = await ensurePauseImage(dir);
  const danm = await buildDanmImages({ outDir: danmImagesDir(), log });
  log(`images: ${pauseImage}, ${Object.values(danm.refs).join(", ")} (${secs(t)})`);
  const binaries: NodeBinaries = { dir, pauseArchive, danm };
  Deno.env.set(preparedEnv, JSON.stringify(binaries));
  return binaries;
}

const danmImagesDir = () => `${cacheRoot()}/images/danm`;

/**
 * What prepareNodeBinaries prepared before this process was started (inside a private network namespace nothing can
 * be downloaded, so nothing is built here): exactly those files, or an error saying what is missing.
 */
export async function preparedNodeBinaries(): Promise<NodeBinaries> {
  const handed = Deno.env.get(preparedEnv);
  if (!handed) {
    throw new Error(
      `${preparedEnv} is not set: the real-node cluster uses what prepareNodeBinaries() built before the run moved ` +
        "into its private network namespace (deno task test node, bench:node, sim --real --kubelet and harness:node " +
        "do it); it builds nothing itself, as it has no network",
    );
  }
  const binaries = JSON.parse(handed) as NodeBinaries;
  const danmDir = binaries.danm.archive.replace(/\/[^/]+\/[^/]+$/, "");
  // The preparing process leases the tag; leased here too, for a run that outlives it.
  await leaseTag(danmDir, binaries.danm.tag);
  const missing: string[] = [];
  for (const name of ["kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl", "crictl"]) {
    if (!await exists(`${binaries.dir}/${name}`)) missing.push(`${binaries.dir}/${name}`);
  }
  for (const f of [binaries.pauseArchive, binaries.danm.archive]) if (!await exists(f)) missing.push(f);
  if (missing.length) {
    throw new Error(
      `what was prepared for the real nodes is gone (${missing.join(", ")}; danm images ${binaries.danm.tag}): ` +
        "not rebuilt here, as this private network namespace cannot download; run the preparation again",
    );
  }
  return binaries;
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

const secs = (since: number) => `${((Date.now() - since) / 1000).toFixed(0)}s`;
