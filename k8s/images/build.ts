// `deno task images [--out DIR] [--registry NAME] [--compiled]`: builds danm's container images, one per component, without a
// container engine or a registry, into one OCI archive (`DIR/<tag>/danm-images.tar`, default DIR dist/images):
//
//   danm-node        the node DaemonSet: netwatcher (node agent + CNI daemon) and its install container
//                    (install-cni.sh, cmd/install_cni.ts, the CNI clients' sources it stages on the host); root
//   danm-webhook     the admission webhook; user 65532
//   danm-svcwatcher  Endpoints/EndpointSlices over danm networks; user 65532
//
// Every image is three layers, the first two shared (stored and pulled once):
//   1. base:  /usr/bin/deno (the Deno running this build), /usr/sbin/nft (nftables, for MultiNetworkPolicy), the
//             libraries they link, busybox (a POSIX shell and cp/mv/… for install-cni.sh and the CNI launcher
//             scripts, nsenter for the node agent), /etc/passwd with root and 65532
//   2. deps:  DENO_DIR=/opt/danm/.deno, the npm packages of every component exactly as deno.lock pins them
//             (`deno cache --frozen`), so no container ever downloads anything
//   3. the component's own sources under /opt/danm: the modules its entry points import, deno.json, deno.lock
//             (and for danm-node RELEASE and k8s/images/install-cni.sh; with --compiled also /opt/danm/dist/danm and
//             dist/fakeipam, standalone CNI clients that install-cni.sh copies instead of staging launchers:
//             `deno task compile` needs DENORT_BIN, a denort of the same Deno, which this machine cannot download,
//             so that variant is not exercised here)
// The tag is a hash of everything that goes in (Deno, libraries, busybox, lock file, sources, this builder), so the
// same checkout builds the same tag; an unchanged tag is not rebuilt. Publish with skopeo, e.g.
//   skopeo copy oci-archive:dist/images/<tag>/danm-images.tar:localhost/danm-node:<tag> \
//     docker://registry.example.com/danm-node:<tag>
// and point the kustomize base at it with an overlay's `images:` (k8s/images/README.md).
import { archiveOciLayout, type ImageDefinition, writeOciLayout } from "./oci.ts";

export interface Component {
  readonly name: string;
  /** Entry points (repository paths); their module graphs are the image's sources. */
  readonly entries: ReadonlyArray<string>;
  /** Other repository files the image carries. */
  readonly files: ReadonlyArray<string>;
  readonly user: string;
  readonly entrypoint: ReadonlyArray<string>;
  /** Writes /opt/danm/RELEASE (the tag), which install-cni.sh names the node's staged CNI runtime after. */
  readonly release?: boolean;
  /** With --compiled: binaries of `deno task compile` put into /opt/danm/dist. */
  readonly compiled?: ReadonlyArray<string>;
}

export const components: ReadonlyArray<Component> = [
  {
    name: "danm-node",
    entries: ["cmd/netwatcher.ts", "cmd/install_cni.ts", "cmd/danm.ts", "cmd/fakeipam.ts"],
    files: ["k8s/images/install-cni.sh"],
    user: "0",
    // The young generation capped (bench:overload; k8s/netwatcher/daemonset.yaml says why).
    entrypoint: [
      "deno",
      "run",
      "--cached-only",
      "--allow-all",
      "--v8-flags=--max-semi-space-size=4",
      "/opt/danm/cmd/netwatcher.ts",
    ],
    release: true,
    compiled: ["danm", "fakeipam"],
  },
  {
    name: "danm-webhook",
    entries: ["cmd/webhook.ts"],
    files: [],
    user: "65532:65532",
    entrypoint: [
      "deno",
      "run",
      "--cached-only",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write=/var/run/danm-webhook/tls",
      "/opt/danm/cmd/webhook.ts",
    ],
  },
  {
    name: "danm-svcwatcher",
    entries: ["cmd/svcwatcher.ts"],
    files: [],
    user: "65532:65532",
    entrypoint: [
      "deno",
      "run",
      "--cached-only",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-sys=hostname",
      "/opt/danm/cmd/svcwatcher.ts",
    ],
  },
];

export const imageEnv = [
  "PATH=/usr/local/bin:/usr/bin:/bin",
  "DENO_DIR=/opt/danm/.deno",
  "DENO_NO_UPDATE_CHECK=1",
  "DENO_NO_PROMPT=1",
];

/** busybox applets linked into /bin: what install-cni.sh and the launcher scripts use, and a shell to look around. */
const applets = [
  "sh",
  "cat",
  "cp",
  "chmod",
  "env",
  "ln",
  "ls",
  "mkdir",
  "mv",
  "rm",
  "sleep",
  "test",
  "true",
  // The node agent enters pods' network namespaces with it to program their MultiNetworkPolicy tables.
  "nsenter",
];

/** nftables' command line, for MultiNetworkPolicy enforcement in the pods' namespaces (adapters/nftables/live.ts). */
const nftBinary = "/usr/sbin/nft";

export interface BuiltImages {
  readonly tag: string;
  /** The OCI archive holding every image. */
  readonly archive: string;
  /** Component name → full reference. */
  readonly refs: Readonly<Record<string, string>>;
  /** Seconds spent building; 0 when the tag was already built. */
  readonly buildSeconds: number;
}

export interface BuildOptions {
  /** Where tags are built and kept (`<outDir>/<tag>/`). */
  readonly outDir: string;
  /** Image names are `<registry>/<component>:<tag>`. Default `localhost`. */
  readonly registry?: string;
  readonly log?: (line: string) => void;
  /** Tags to keep besides the new one in outDir (older ones are removed). Default 2. */
  readonly keep?: number;
  /** Put compiled CNI clients into danm-node (needs DENORT_BIN, see `deno task compile`). */
  readonly compiled?: boolean;
}

const repoRoot = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

async function output(argv: ReadonlyArray<string>, opts: { env?: Record<string, string>; cwd?: string } = {}) {
  const [cmd, ...args] = argv;
  const out = await new Deno.Command(cmd, { args, env: opts.env, cwd: opts.cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`${argv.join(" ")} exited with ${out.code}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** The repository files an entry point imports (its local module graph, as Deno resolves it). */
async function localModules(entry: string): Promise<string[]> {
  const info = JSON.parse(await output([Deno.execPath(), "info", "--json", `${repoRoot}/${entry}`], { cwd: repoRoot }));
  const prefix = `file://${repoRoot}/`;
  return (info.modules as Array<{ specifier: string }>)
    .map((m) => m.specifier)
    .filter((s) => s.startsWith(prefix))
    .map((s) => decodeURIComponent(s.slice(prefix.length)));
}

/** The shared libraries a binary needs, as the dynamic linker resolves them on this machine (ldd), plus the linker. */
async function sharedLibraries(binary: string): Promise<string[]> {
  const out = await output(["ldd", binary]);
  const libs = new Set<string>();
  for (const line of out.split("\n")) {
    const resolved = line.match(/=>\s+(\/\S+)/)?.[1] ?? line.match(/^\s*(\/\S+)\s+\(/)?.[1];
    if (resolved) libs.add(resolved);
  }
  if (libs.size === 0) throw new Error(`ldd found no libraries for ${binary}`);
  return [...libs].sort();
}

async function findBusybox(): Promise<string> {
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) {
    const head = await Deno.open(p).then(async (f) => {
      const buf = new Uint8Array(4096);
      const n = await f.read(buf);
      f.close();
      return new TextDecoder("latin1").decode(buf.subarray(0, n ?? 0));
    }, () => undefined);
    // Only a static busybox will do: a dynamic one (an ELF interpreter in its header) would need its own libraries.
    if (head !== undefined && !head.includes("ld-linux")) return p;
  }
  throw new Error("no static busybox (Debian package busybox-static) to give the images a shell");
}

async function sha256(text: string): Promise<string> {
  return Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function fileHash(path: string): Promise<string> {
  return (await output(["sha256sum", path])).split(" ")[0];
}

async function copyInto(root: string, src: string, dest: string, mode?: number): Promise<void> {
  const target = `${root}${dest}`;
  await Deno.mkdir(target.replace(/\/[^/]+$/, ""), { recursive: true });
  await Deno.copyFile(src, target);
  await Deno.chmod(target, mode ?? ((await Deno.stat(src)).mode! & 0o777) | 0o444);
}

interface Inputs {
  readonly deno: string;
  readonly nft: string;
  readonly libs: ReadonlyArray<string>;
  readonly busybox: string;
  readonly sources: Readonly<Record<string, ReadonlyArray<string>>>;
  readonly tag: string;
}

async function gatherInputs(compiled: boolean): Promise<Inputs> {
  const deno = Deno.execPath();
  const nft = nftBinary;
  await Deno.stat(nft).catch(() => {
    throw new Error(`no ${nft} (Debian package nftables) to give the node image its MultiNetworkPolicy tool`);
  });
  const libs = [...new Set([...await sharedLibraries(deno), ...await sharedLibraries(nft)])].sort();
  const busybox = await findBusybox();
  const sources: Record<string, string[]> = {};
  for (const c of components) {
    const files = new Set<string>(["deno.json", "deno.lock", ...c.files]);
    for (const e of c.entries) for (const m of await localModules(e)) files.add(m);
    sources[c.name] = [...files].sort();
  }
  // Everything that goes in, hashed: what the tag names.
  const parts: string[] = [`deno ${Deno.version.deno}`, `applets ${applets.join(",")}`, `env ${imageEnv.join(",")}`];
  if (compiled) {
    const denort = Deno.env.get("DENORT_BIN");
    if (!denort) throw new Error("--compiled needs DENORT_BIN (see deno task compile)");
    parts.push(`denort ${await fileHash(denort)}`);
  }
  for (const f of [deno, nft, busybox, ...libs]) parts.push(`${f} ${await fileHash(f)}`);
  for (const f of ["k8s/images/build.ts", "k8s/images/oci.ts"]) {
    parts.push(`${f} ${await fileHash(`${repoRoot}/${f}`)}`);
  }
  for (const c of components) {
    parts.push(`component ${JSON.stringify({ ...c })}`);
    for (const f of sources[c.name]) parts.push(`${c.name} ${f} ${await fileHash(`${repoRoot}/${f}`)}`);
  }
  const tag = (await sha256(parts.join("\n"))).slice(0, 12);
  return { deno, nft, libs, busybox, sources, tag };
}

async function stageBase(root: string, inputs: Inputs): Promise<void> {
  await copyInto(root, inputs.deno, "/usr/bin/deno", 0o755);
  await copyInto(root, inputs.nft, "/usr/sbin/nft", 0o755);
  for (const lib of inputs.libs) {
    // The linker at its ABI path; libraries where the linker looks by default.
    const dest = lib.includes("/ld-linux")
      ? "/lib64/ld-linux-x86-64.so.2"
      : `/lib/x86_64-linux-gnu/${lib.split("/").pop()}`;
    await copyInto(root, lib, dest, 0o755);
  }
  await copyInto(root, inputs.busybox, "/bin/busybox", 0o755);
  for (const a of applets) await Deno.symlink("busybox", `${root}/bin/${a}`);
  await Deno.mkdir(`${root}/etc`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/etc/passwd`,
    "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false\n",
  );
  await Deno.writeTextFile(`${root}/etc/group`, "root:x:0:\nnonroot:x:65532:\n");
  for (const d of ["tmp", "root", "home/nonroot", "var/run", "run"]) {
    await Deno.mkdir(`${root}/${d}`, { recursive: true });
  }
  await Deno.chmod(`${root}/tmp`, 0o1777);
  await output(["chown", "65532:65532", `${root}/home/nonroot`]).catch(() => {});
}

/** DENO_DIR with every component's npm packages, as deno.lock pins them; nothing path-dependent is kept. */
async function stageDeps(root: string, work: string, inputs: Inputs): Promise<void> {
  const src = `${work}/deps-src`;
  const all = new Set(Object.values(inputs.sources).flat());
  for (const f of all) await copyInto(src, `${repoRoot}/${f}`, `/${f}`);
  const denoDir = `${root}/opt/danm/.deno`;
  const entries = [...new Set(components.flatMap((c) => c.entries))];
  await output([inputs.deno, "cache", "--frozen", ...entries], {
    cwd: src,
    env: { ...Deno.env.toObject(), DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1" },
  });
  // Transpiled sources are keyed by the build's paths, and the SQLite caches change with every run: left out, so the
  // layer holds only what the lock file decides.
  for await (const e of Deno.readDir(denoDir)) {
    if (e.name !== "npm" && e.name !== "remote") await Deno.remove(`${denoDir}/${e.name}`, { recursive: true });
  }
  await output(["chmod", "-R", "a+rX,go-w", denoDir]);
}

async function stageComponent(root: string, c: Component, inputs: Inputs, compiled: boolean): Promise<void> {
  for (const f of inputs.sources[c.name]) await copyInto(root, `${repoRoot}/${f}`, `/opt/danm/${f}`);
  if (compiled && c.compiled?.length) {
    await output([Deno.execPath(), "run", "-A", `${repoRoot}/cmd/compile.ts`, ...c.compiled], { cwd: repoRoot });
    for (const b of c.compiled) await copyInto(root, `${repoRoot}/dist/${b}`, `/opt/danm/dist/${b}`, 0o755);
  }
  if (c.release) await Deno.writeTextFile(`${root}/opt/danm/RELEASE`, `${inputs.tag}\n`);
  await output(["chmod", "-R", "a+rX,go-w", `${root}/opt/danm`]);
}

/** Builds the images unless `<outDir>/<tag>` already holds them; safe when several processes build at once. */
export async function buildDanmImages(opts: BuildOptions): Promise<BuiltImages> {
  const log = opts.log ?? (() => {});
  const registry = opts.registry ?? "localhost";
  const compiled = opts.compiled ?? false;
  const inputs = await gatherInputs(compiled);
  const refs = Object.fromEntries(components.map((c) => [c.name, `${registry}/${c.name}:${inputs.tag}`]));
  const dir = `${opts.outDir}/${inputs.tag}`;
  const archive = `${dir}/danm-images.tar`;
  // Leased before it is looked for: from here on no other process's prune removes it (see leaseTag).
  await leaseTag(opts.outDir, inputs.tag);
  if (await sameRefs(dir, refs)) return { tag: inputs.tag, archive, refs, buildSeconds: 0 };
  const started = Date.now();
  log(`building danm images ${inputs.tag} (${components.map((c) => c.name).join(", ")})`);
  await Deno.mkdir(opts.outDir, { recursive: true });
  const work = await Deno.makeTempDir({ dir: opts.outDir, prefix: `.build-${inputs.tag}-` });
  try {
    const base = `${work}/base`, deps = `${work}/deps`;
    await stageBase(base, inputs);
    await stageDeps(deps, work, inputs);
    const images: ImageDefinition[] = [];
    for (const c of components) {
      const own = `${work}/${c.name}`;
      await stageComponent(own, c, inputs, compiled);
      images.push({
        ref: refs[c.name],
        layers: [{ dir: base }, { dir: deps }, { dir: own }],
        config: {
          user: c.user,
          env: imageEnv,
          entrypoint: c.entrypoint,
          labels: { "org.opencontainers.image.title": c.name, "org.opencontainers.image.version": inputs.tag },
        },
      });
    }
    const out = `${work}/out`;
    await Deno.mkdir(out);
    await writeOciLayout(`${work}/layout`, images);
    await archiveOciLayout(`${work}/layout`, `${out}/danm-images.tar`);
    await Deno.writeTextFile(`${out}/refs.json`, JSON.stringify(refs, null, 2) + "\n");
    // Another build of the same tag may have landed meanwhile: the same bytes, and maybe in use already, so it stays.
    // Only one built for another registry (other refs) is replaced.
    if (!await Deno.rename(out, dir).then(() => true, () => false) && !await sameRefs(dir, refs)) {
      await Deno.remove(dir, { recursive: true });
      await Deno.rename(out, dir);
    }
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  await prune(opts.outDir, inputs.tag, opts.keep ?? 2);
  const buildSeconds = (Date.now() - started) / 1000;
  log(`built danm images ${inputs.tag} in ${buildSeconds.toFixed(0)}s: ${archive}`);
  return { tag: inputs.tag, archive, refs, buildSeconds };
}

async function sameRefs(dir: string, refs: Readonly<Record<string, string>>): Promise<boolean> {
  const text = await Deno.readTextFile(`${dir}/refs.json`).catch(() => undefined);
  return text !== undefined && JSON.stringify(JSON.parse(text)) === JSON.stringify(refs);
}

const leases = new Map<string, Deno.FsFile>();

/**
 * Leases a tag of `outDir` to this process until it exits: a shared flock on `<outDir>/.leases/<tag>`. A prune
 * removes only tags it can lock exclusively, so a tag that a process found (or built) and is about to use — e.g. a
 * test run that prepared it before moving into its private namespace — stays, whatever other worktrees build
 * meanwhile. The lease files stay (empty): removing one could let a later prune lock a new file while the tag is
 * still leased through the old one.
 */
export async function leaseTag(outDir: string, tag: string): Promise<void> {
  const path = `${outDir}/.leases/${tag}`;
  if (leases.has(path)) return;
  await Deno.mkdir(`${outDir}/.leases`, { recursive: true });
  const file = await Deno.open(path, { create: true, write: true });
  await file.lock(false);
  leases.set(path, file);
}

/** Removes all but the newest `keep` other tags, except the ones a process holds a lease on (leaseTag). */
export async function prune(outDir: string, current: string, keep: number): Promise<void> {
  const tags: Array<{ name: string; mtime: number }> = [];
  for await (const e of Deno.readDir(outDir)) {
    if (!e.isDirectory || e.name === current || e.name.startsWith(".")) continue;
    const st = await Deno.stat(`${outDir}/${e.name}`);
    tags.push({ name: e.name, mtime: st.mtime?.getTime() ?? 0 });
  }
  tags.sort((a, b) => b.mtime - a.mtime);
  for (const t of tags.slice(keep)) {
    const path = `${outDir}/.leases/${t.name}`;
    if (leases.has(path)) continue; // this process's own
    await Deno.mkdir(`${outDir}/.leases`, { recursive: true });
    const file = await Deno.open(path, { create: true, write: true });
    try {
      if (!await file.tryLock(true)) continue; // leased: in use by another process
      await Deno.remove(`${outDir}/${t.name}`, { recursive: true }).catch(() => {});
    } finally {
      file.close();
    }
  }
}

if (import.meta.main) {
  const args = [...Deno.args];
  let outDir = `${repoRoot}/dist/images`, registry = "localhost", compiled = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--out") outDir = args[++i];
    else if (args[i] === "--registry") registry = args[++i];
    else if (args[i] === "--compiled") compiled = true;
    else {
      console.error(`usage: deno task images [--out DIR] [--registry NAME] [--compiled]`);
      Deno.exit(2);
    }
  }
  const built = await buildDanmImages({ outDir, registry, compiled, log: (l) => console.error(l) });
  console.log(JSON.stringify(built, null, 2));
}
