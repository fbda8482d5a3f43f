// A CNI bin directory as a runtime sees it: `danm` and `fakeipam` launchers (the thin clients of the node daemon,
// run by deno from this checkout, with DANM_SOCKET and DENO_DIR baked in because runtimes and metaplugins exec
// plugins with a reduced environment) next to the reference plugins, plus any test plugins a test adds.
//
// Launchers are `#!/bin/sh` + `exec <deno> run … <repo>/cmd/danm.ts "$@"`: `deno compile` does not work offline
// (test-environment.md §4.5). Paths are ours, never test input, and are single-quoted anyway.
import { ensureCniPlugins } from "./cniplugins.ts";
import { repoRoot } from "./proc.ts";

export interface CniBin extends AsyncDisposable {
  readonly dir: string;
  readonly socket: string;
  /** Adds an executable (e.g. a deliberately failing test plugin) under `name`. */
  addPlugin(name: string, script: string): Promise<void>;
  dispose(): Promise<void>;
}

export interface CniBinOptions {
  /** The daemon socket the launchers talk to. */
  readonly socket: string;
  /** Default: a fresh temporary directory, removed by dispose(). */
  readonly dir?: string;
  /** Link the reference plugins (bridge, macvlan, host-local …) in too. Default true. */
  readonly referencePlugins?: boolean;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function launcherScript(program: "danm" | "fakeipam", socket: string): string {
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
  // --no-config/--no-lock: the thin client imports only relative files; skipping the config saves ~5 ms per exec.
  return [
    "#!/bin/sh",
    `DANM_SOCKET=${quote(socket)}`,
    `DENO_DIR=${quote(denoDir)}`,
    "DENO_NO_UPDATE_CHECK=1",
    "export DANM_SOCKET DENO_DIR DENO_NO_UPDATE_CHECK",
    `exec ${quote(Deno.execPath())} run --cached-only --no-config --no-lock -A ${
      quote(`${repoRoot}/cmd/${program}.ts`)
    } "$@"`,
    "",
  ].join("\n");
}

export async function makeCniBin(opts: CniBinOptions): Promise<CniBin> {
  const own = opts.dir === undefined;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "danm-cnibin-" });
  await Deno.mkdir(dir, { recursive: true });
  // Written aside and renamed into place, as an installer replaces a plugin: a runtime never execs half a file, and
  // a plugin that was a symlink (DANM's binaries in an upgraded bin dir) is replaced, not written through.
  const write = async (name: string, text: string) => {
    const path = `${dir}/${name}`, staged = `${dir}/.${name}.new`;
    await Deno.writeTextFile(staged, text);
    await Deno.chmod(staged, 0o755);
    await Deno.rename(staged, path);
  };
  await write("danm", launcherScript("danm", opts.socket));
  await write("fakeipam", launcherScript("fakeipam", opts.socket));
  if (opts.referencePlugins ?? true) {
    const plugins = await ensureCniPlugins();
    for await (const e of Deno.readDir(plugins)) {
      if (!e.isFile) continue;
      await Deno.remove(`${dir}/${e.name}`).catch(() => {});
      await Deno.symlink(`${plugins}/${e.name}`, `${dir}/${e.name}`);
    }
  }
  const dispose = async () => {
    if (own) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return { dir, socket: opts.socket, addPlugin: write, dispose, [Symbol.asyncDispose]: dispose };
}
