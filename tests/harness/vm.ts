// The kernel tier: runs a command inside a QEMU guest (software emulation) that boots Debian's
// kernel package with its modules (ipvlan, 8021q, dummy, vxlan, macvlan, veth, bridge), mounts
// the host root read-only over 9p and chroots into it. The host kernel lacks ipvlan, 802.1Q vlan
// and dummy; this is where those are exercised for real.
import { cacheRoot, repoRoot, run } from "./proc.ts";

/** Modules the guest loads; their dependencies are resolved from modules.dep. */
const guestModules = [
  "virtio_pci",
  "virtio_net",
  "9pnet_virtio",
  "9p",
  "overlay",
  "8021q",
  "ipvlan",
  "macvlan",
  "veth",
  "bridge",
  "vxlan",
  "dummy",
  // MultiNetworkPolicy tables (tests/kernel/netpol): nf_tables with the inet family, sets and vmaps built in; ct state.
  // libcrc32c (theirs, through nf_conntrack) needs a crc32c implementation first: modules.dep only has it as a softdep.
  "crc32c_generic",
  "nf_tables",
  "nft_ct",
];

// The initramfs /init. Static text: the job itself travels as JSON through the results share and is
// executed by tests/harness/vm_guest.ts, so nothing from a test ends up in a shell command line.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${guestModules.filter((m) => m !== "dummy").join(" ")}; do modprobe $m || echo "modprobe $m failed"; done
modprobe dummy numdummies=0
mkdir -p /lower /upper /root
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /lower || { echo DANM_VM_EXIT=97; poweroff -f; }
mount -t tmpfs -o size=1G upper /upper
mkdir -p /upper/u /upper/w
# A writable view of the host root: writes (deno's caches, /run, /tmp) land in guest memory.
# (/tmp stays the host's, seen through the overlay: a checkout under /tmp must remain visible.)
if ! mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /root; then
  echo "overlay over 9p failed; using the read-only root"; mount --bind /lower /root; mount -t tmpfs tmp /root/tmp
fi
mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
mount -t tmpfs run /root/run
mkdir -p /root/run/netns /root/tmp/results
mount -t 9p -o trans=virtio,version=9p2000.L results /root/tmp/results || { echo DANM_VM_EXIT=98; poweroff -f; }
ip link set lo up
# QEMU's user-mode network: the host's loopback (the kernel tier's apiserver) is 10.0.2.2 from here. Named qemu0 so
# that no test's eth0 can meet it.
if ip link set eth0 name qemu0; then ip link set qemu0 up; ip addr add 10.0.2.15/24 dev qemu0; fi
DENO=$(cat /root/tmp/results/deno-path)
chroot /root "$DENO" run -A --cached-only ${repoRoot}/tests/harness/vm_guest.ts /tmp/results/job.json
echo "DANM_VM_EXIT=$?"
sync
poweroff -f
`;

export interface Kernel {
  readonly vmlinuz: string;
  readonly modulesRoot: string; // a root directory containing lib/modules/<kver>
  readonly kver: string;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

/** Downloads and unpacks Debian's current kernel package (cached by package name). */
export async function ensureKernel(): Promise<Kernel> {
  const deps = await run(["apt-cache", "depends", "linux-image-amd64"]);
  const pkg = deps.match(/Depends:\s+(linux-image-[0-9][^\s]*-amd64)/)?.[1];
  if (!pkg) throw new Error(`cannot find the kernel package behind linux-image-amd64:\n${deps}`);
  const kver = pkg.replace(/^linux-image-/, "");
  const root = `${cacheRoot()}/kernel/${pkg}`;
  const vmlinuz = `${root}/boot/vmlinuz-${kver}`;
  if (!(await exists(`${root}/.done`))) {
    const tmp = `${root}.tmp`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.mkdir(tmp, { recursive: true });
    await run(["apt-get", "download", pkg], { cwd: tmp });
    const deb = [...Deno.readDirSync(tmp)].find((e) => e.name.endsWith(".deb"))!.name;
    await run(["dpkg-deb", "-x", `${tmp}/${deb}`, tmp]);
    await Deno.remove(`${tmp}/${deb}`);
    await run(["depmod", "-b", tmp, kver]);
    await Deno.writeTextFile(`${tmp}/.done`, pkg);
    await Deno.remove(root, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, root);
  }
  return { vmlinuz, modulesRoot: root, kver };
}

/** Module file paths (relative to lib/modules/<kver>) for the wanted modules and their dependencies. */
async function moduleClosure(k: Kernel): Promise<string[]> {
  const depFile = await Deno.readTextFile(`${k.modulesRoot}/lib/modules/${k.kver}/modules.dep`);
  const deps = new Map<string, string[]>();
  for (const line of depFile.split("\n")) {
    const [mod, rest] = line.split(":");
    if (mod) deps.set(mod, (rest ?? "").trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map<string, string>();
  for (const path of deps.keys()) {
    byName.set(path.split("/").pop()!.replace(/\.ko(\..*)?$/, "").replace(/-/g, "_"), path);
  }
  const out = new Set<string>();
  const visit = (path: string) => {
    if (out.has(path)) return;
    out.add(path);
    for (const d of deps.get(path) ?? []) visit(d);
  };
  for (const m of guestModules) {
    const path = byName.get(m);
    if (!path) throw new Error(`kernel ${k.kver} has no module ${m}`);
    visit(path);
  }
  return [...out];
}

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
}

/** Builds the busybox initramfs (cached by kernel and init script). */
export async function ensureInitramfs(k: Kernel): Promise<string> {
  const mods = await moduleClosure(k);
  const key = await sha256(`${k.kver}\n${initScript}\n${mods.join("\n")}`);
  const out = `${cacheRoot()}/kernel/initramfs-${k.kver}-${key}.cpio.gz`;
  if (await exists(out)) return out;
  const dir = await Deno.makeTempDir({ prefix: "danm-initramfs-" });
  try {
    for (const d of ["bin", "proc", "sys", "dev", "tmp", `lib/modules/${k.kver}`]) {
      await Deno.mkdir(`${dir}/${d}`, { recursive: true });
    }
    await Deno.copyFile("/bin/busybox", `${dir}/bin/busybox`);
    await Deno.chmod(`${dir}/bin/busybox`, 0o755);
    await Deno.writeTextFile(`${dir}/init`, initScript, { mode: 0o755 });
    const modDir = `${k.modulesRoot}/lib/modules/${k.kver}`;
    for (const m of mods) {
      await Deno.mkdir(`${dir}/lib/modules/${k.kver}/${m.substring(0, m.lastIndexOf("/"))}`, { recursive: true });
      await Deno.copyFile(`${modDir}/${m}`, `${dir}/lib/modules/${k.kver}/${m}`);
    }
    for (const f of ["modules.dep", "modules.alias", "modules.symbols", "modules.builtin", "modules.order"]) {
      if (await exists(`${modDir}/${f}`)) await Deno.copyFile(`${modDir}/${f}`, `${dir}/lib/modules/${k.kver}/${f}`);
    }
    await run(["depmod", "-b", dir, k.kver]);
    const files = (await run(["find", ".", "-mindepth", "1"], { cwd: dir })).trim().split("\n");
    const cpio = new Deno.Command("cpio", {
      args: ["-o", "-H", "newc", "--quiet"],
      cwd: dir,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const gz = cpio.stdout.pipeThrough(new CompressionStream("gzip"));
    const writer = cpio.stdin.getWriter();
    const writing = writer.write(new TextEncoder().encode(files.join("\n") + "\n")).then(() => writer.close());
    const tmpOut = `${out}.${Deno.pid}.tmp`;
    await Deno.writeFile(tmpOut, gz);
    await writing;
    if (!(await cpio.status).success) throw new Error("cpio failed");
    await Deno.rename(tmpOut, out);
    return out;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export interface GuestJob {
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly env: Record<string, string>;
}

export interface GuestResult {
  readonly code: number;
  /** The host directory shared read-write with the guest (mounted at /tmp/results there). */
  readonly resultsDir: string;
}

/**
 * Boots the guest once and runs `job` inside it, streaming the guest console to `onOutput`.
 * A missing exit marker (panic, hang, timeout) is a failure with code 124.
 */
export async function runInGuest(
  job: GuestJob,
  opts: { timeoutSec?: number; onOutput?: (chunk: string) => void; resultsDir?: string } = {},
): Promise<GuestResult> {
  const k = await ensureKernel();
  const initrd = await ensureInitramfs(k);
  const resultsDir = opts.resultsDir ?? await Deno.makeTempDir({ prefix: "danm-vm-" });
  await Deno.writeTextFile(`${resultsDir}/job.json`, JSON.stringify(job));
  await Deno.writeTextFile(`${resultsDir}/deno-path`, Deno.execPath());
  const qemu = new Deno.Command("qemu-system-x86_64", {
    args: [
      "-accel",
      "tcg",
      "-M",
      "pc",
      "-smp",
      "2",
      "-m",
      "3G",
      "-nographic",
      "-no-reboot",
      "-nodefaults",
      "-serial",
      "stdio",
      "-kernel",
      k.vmlinuz,
      "-initrd",
      initrd,
      "-append",
      "console=ttyS0 quiet panic=-1",
      // User-mode networking, outbound only: the guest reaches the host's loopback at 10.0.2.2 (the apiserver).
      "-netdev",
      "user,id=hostnet",
      "-device",
      "virtio-net-pci,netdev=hostnet,romfile=",
      "-virtfs",
      "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
      "-virtfs",
      `local,path=${resultsDir},mount_tag=results,security_model=none`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timeout = setTimeout(() => {
    try {
      qemu.kill("SIGKILL");
    } catch { /* exited */ }
  }, (opts.timeoutSec ?? 900) * 1000);
  let tailText = "";
  let code = 124;
  const decoder = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) {
      const text = decoder.decode(chunk, { stream: true });
      opts.onOutput?.(text);
      tailText = (tailText + text).slice(-4096);
      const m = tailText.match(/DANM_VM_EXIT=(\d+)/);
      if (m) code = Number(m[1]);
    }
  };
  await Promise.all([pump(qemu.stdout), pump(qemu.stderr), qemu.status]);
  clearTimeout(timeout);
  return { code, resultsDir };
}
