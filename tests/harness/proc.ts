// Small process helpers for the test harness. Commands are always argv arrays, never shell strings.

export class CommandFailed extends Error {
  constructor(readonly argv: readonly string[], readonly code: number, readonly stderr: string) {
    super(`${argv.join(" ")} exited with ${code}: ${stderr.trim().slice(-2000)}`);
  }
}

export interface RunOptions {
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  readonly stdin?: string;
  /** Stream the child's stderr to ours instead of capturing it (long builds). */
  readonly inheritStderr?: boolean;
}

/** Runs a command to completion and returns its stdout; throws CommandFailed on a non-zero exit. */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd, {
    args,
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: opts.inheritStderr ? "inherit" : "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const stderr = opts.inheritStderr ? "" : new TextDecoder().decode(out.stderr);
    throw new CommandFailed(argv, out.code, stderr || stdout);
  }
  return stdout;
}

/** The command's path on PATH, or undefined. */
export async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const st = await Deno.stat(`${dir}/${cmd}`);
      if (st.isFile) return `${dir}/${cmd}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** True when the command exists on PATH. */
export async function have(cmd: string): Promise<boolean> {
  return (await which(cmd)) !== undefined;
}

/** A free TCP port on loopback (there is a small race until the caller binds it; acceptable in tests). */
/** The kernel's range for outgoing connections' local ports (net.ipv4.ip_local_port_range). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/).map(Number);
    if (lo > 0 && hi >= lo) return [lo, hi];
  } catch { /* not Linux */ }
  return [32768, 60999];
}

/**
 * A free loopback port for a server a test starts. Taken below the ephemeral range: a port the kernel may hand to
 * any outgoing connection can be gone by the time the server binds it (seen: kube-apiserver "address already in
 * use" in CI).
 */
export function freePort(): number {
  const [lo] = ephemeralRange();
  const floor = 10_000, ceiling = lo > floor + 1000 ? lo - 1 : 0;
  for (let i = 0; ceiling && i < 200; i++) {
    const port = floor + Math.floor(Math.random() * (ceiling - floor));
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch { /* taken: try another */ }
  }
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export function cacheRoot(): string {
  const explicit = Deno.env.get("DANM_CACHE");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache`;
  return `${xdg}/danm`;
}

export const repoRoot: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}
