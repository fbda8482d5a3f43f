// Builds the real peers danm is compared with, cached by version and inputs under the danm cache like the control
// plane (tests/tools/k8s/build.sh): Nokia's DANM v4.3.0 from its source archive in tests/fixtures/peers, Whereabouts
// v0.9.2 and Multus v4.3.0 through the Go tools modules under tests/tools. Each build also keeps the peer's own
// manifests (CRDs, RBAC) next to its binaries, which is what the installers in this directory apply.
//
// Safe when several worktrees run it at once: one builder at a time per peer (a lock file), into a private
// temporary directory renamed into place when complete. Built only when missing; a cold build prints its time.
import { cacheRoot, repoRoot, run } from "../proc.ts";

export const peerVersions = { danm: "v4.3.0", whereabouts: "v0.9.2", multus: "v4.3.0" } as const;

/** A built peer: its binaries in `dir`, its manifests under `dir/manifests`. */
export interface PeerBuild {
  readonly dir: string;
  readonly manifests: string;
  readonly version: string;
}

const goEnv = () => ({
  ...Deno.env.toObject(),
  CGO_ENABLED: "0",
  GOFLAGS: "-trimpath -buildvcs=false",
});

async function sha256Hex(...parts: Uint8Array[]): Promise<string> {
  const total = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    total.set(p, at);
    at += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", total));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

/**
 * The directory `<cache>/<name>-<key>`, made by `build(tmp)` unless a complete one is there. `build` writes the
 * binaries into `tmp` and the manifests into `tmp/manifests`.
 */
async function cachedBuild(
  name: string,
  key: string,
  build: (tmp: string) => Promise<void>,
): Promise<string> {
  const dir = `${cacheRoot()}/${name}-${key}`;
  const done = `${dir}/.complete`;
  if (await exists(done)) return dir;
  await Deno.mkdir(cacheRoot(), { recursive: true });
  using lock = await Deno.open(`${cacheRoot()}/${name}.lock`, { create: true, write: true });
  await lock.lock(true);
  try {
    if (await exists(done)) return dir; // another process built it while we waited
    const tmp = await Deno.makeTempDir({ dir: cacheRoot(), prefix: `${name}.tmp-` });
    try {
      await Deno.mkdir(`${tmp}/manifests`);
      const started = Date.now();
      console.error(`[peers] building ${name} (cold build)...`);
      await build(tmp);
      await Deno.writeTextFile(`${tmp}/.complete`, `${new Date().toISOString()}\n`);
      await Deno.remove(dir, { recursive: true }).catch(() => {}); // an incomplete leftover
      await Deno.rename(tmp, dir);
      console.error(`[peers] cold build of ${name} took ${((Date.now() - started) / 1000).toFixed(0)}s`);
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
    return dir;
  } finally {
    await lock.unlock();
  }
}

async function copyFiles(from: string, names: ReadonlyArray<string>, to: string): Promise<void> {
  for (const n of names) await Deno.copyFile(`${from}/${n}`, `${to}/${n.split("/").pop()}`);
}

// --- DANM v4.3.0 ---------------------------------------------------------------------------------------------

export const danmSourceArchive = `${repoRoot}/tests/fixtures/peers/danm-v4.3.0-src.tar.gz`;
export const danmGoBinaries = ["danm", "fakeipam", "webhook", "netwatcher", "svcwatcher"] as const;

/**
 * Nokia's DANM v4.3.0: `danm`, `fakeipam`, `webhook`, `netwatcher`, `svcwatcher`, and under `manifests/` its
 * `integration/` directory (CRDs of group danm.k8s.io, RBAC, the webhook and CNI config manifests).
 */
export async function ensureDanmGo(): Promise<PeerBuild> {
  const archive = await Deno.readFile(danmSourceArchive);
  const key = `${peerVersions.danm}-${(await sha256Hex(archive)).slice(0, 12)}`;
  const dir = await cachedBuild("danm-go", key, async (tmp) => {
    const src = `${tmp}/src`;
    await Deno.mkdir(src);
    await run(["tar", "-xzf", danmSourceArchive, "-C", src]);
    await run(["go", "build", "-ldflags", "-s -w", "-o", `${tmp}/`, ...danmGoBinaries.map((b) => `./cmd/${b}`)], {
      cwd: src,
      env: goEnv(),
      inheritStderr: true,
    });
    await run(["cp", "-r", `${src}/integration/.`, `${tmp}/manifests/`]);
    await Deno.remove(src, { recursive: true });
  });
  return { dir, manifests: `${dir}/manifests`, version: peerVersions.danm };
}

// --- Go tools modules (Whereabouts, Multus) ------------------------------------------------------------------

/** Builds `tools` of the module in tests/tools/<module> into `<tmp>/<name>`, keyed by its go.mod and go.sum. */
async function toolsModuleBuild(
  module: "whereabouts" | "multus",
  version: string,
  upstream: string,
  tools: ReadonlyArray<{ readonly name: string; readonly pkg: string }>,
  manifests: ReadonlyArray<string>,
): Promise<PeerBuild> {
  const cwd = `${repoRoot}/tests/tools/${module}`;
  const inputs = await Promise.all(["go.mod", "go.sum"].map((f) => Deno.readFile(`${cwd}/${f}`)));
  const recipe = new TextEncoder().encode(JSON.stringify({ tools, manifests }));
  const key = `${version}-${(await sha256Hex(...inputs, recipe)).slice(0, 12)}`;
  const dir = await cachedBuild(module, key, async (tmp) => {
    for (const t of tools) {
      await run(["go", "build", "-ldflags", "-s -w", "-o", `${tmp}/${t.name}`, t.pkg], {
        cwd,
        env: goEnv(),
        inheritStderr: true,
      });
    }
    const moduleDir = (await run(["go", "list", "-m", "-f", "{{.Dir}}", upstream], { cwd, env: goEnv() })).trim();
    await copyFiles(moduleDir, manifests, `${tmp}/manifests`);
  });
  return { dir, manifests: `${dir}/manifests`, version };
}

/** Whereabouts v0.9.2: the `whereabouts` IPAM plugin and `ip-control-loop`; its CRDs and daemonset-install.yaml. */
export function ensureWhereabouts(): Promise<PeerBuild> {
  const m = "github.com/k8snetworkplumbingwg/whereabouts";
  return toolsModuleBuild("whereabouts", peerVersions.whereabouts, m, [
    { name: "whereabouts", pkg: `${m}/cmd` },
    { name: "ip-control-loop", pkg: `${m}/cmd/controlloop` },
  ], [
    "doc/crds/daemonset-install.yaml",
    "doc/crds/whereabouts.cni.cncf.io_ippools.yaml",
    "doc/crds/whereabouts.cni.cncf.io_overlappingrangeipreservations.yaml",
    "doc/crds/whereabouts.cni.cncf.io_nodeslicepools.yaml",
  ]);
}

/** Multus v4.3.0: thin `multus`, thick `multus-shim` + `multus-daemon`; its daemonset manifests (NAD CRD, RBAC). */
export function ensureMultus(): Promise<PeerBuild> {
  const m = "gopkg.in/k8snetworkplumbingwg/multus-cni.v4";
  return toolsModuleBuild("multus", peerVersions.multus, m, [
    { name: "multus", pkg: `${m}/cmd/multus` },
    { name: "multus-shim", pkg: `${m}/cmd/multus-shim` },
    { name: "multus-daemon", pkg: `${m}/cmd/multus-daemon` },
  ], ["deployments/multus-daemonset.yml", "deployments/multus-daemonset-thick.yml"]);
}

/** Builds every peer (sequentially: each build takes the machine's cores); what the test runner and benches call. */
export async function ensurePeers(): Promise<{ danm: PeerBuild; whereabouts: PeerBuild; multus: PeerBuild }> {
  const danm = await ensureDanmGo();
  const whereabouts = await ensureWhereabouts();
  const multus = await ensureMultus();
  return { danm, whereabouts, multus };
}
