// Puts danm's CNI binaries into the node's CNI bin directory and writes 00-danm.conflist — what the node
// DaemonSet's install container runs. Binaries are written atomically (temporary file + rename), so the
// runtime never execs a half-written plugin; the configuration goes last, so kubelet does not pick danm up
// before its binaries are in place. Where no compiled binary is available, a launcher script runs the
// plugin from source with Deno.
import { Effect, Schema } from "effect";
import { Fs } from "../ports/filesystem.ts";
import { supportedVersions } from "../cni/versions.ts";

/**
 * The network configuration the installer writes: a list, because only a list can name every CNI version danm
 * speaks (`cniVersions`, CNI 1.1), from which a runtime picks the highest it knows — 1.1.0 (STATUS, GC) where its
 * libcni has it. `cniVersion` is 1.0.0 for runtimes whose libcni predates `cniVersions`: containerd 1.6 and 1.7
 * refuse a 1.1.0 result ("unsupported CNI result version"). Measured with containerd 1.6.20.
 */
export const configFileName = "00-danm.conflist";
/** What earlier installers wrote; removed, since it would sort before the list and win. */
const previousConfigFileName = "00-danm.conf";
export const configFallbackVersion = "1.0.0";

export const cniPrograms = ["danm", "fakeipam"] as const;
export type CniProgram = typeof cniPrograms[number];

export class InstallError extends Schema.TaggedError<InstallError>()("InstallError", {
  what: Schema.String,
  reason: Schema.String,
}) {
  override get message() {
    return `install ${this.what}: ${this.reason}`;
  }
}

export interface InstallOptions {
  readonly binDir: string;
  readonly confDir: string;
  /** Directory holding compiled `danm` and `fakeipam` (from `deno task compile`), if any. */
  readonly compiledDir?: string;
  /** Used for each program without a compiled binary. */
  readonly launcher?: { readonly deno: string; readonly repo: string; readonly denoDir?: string };
  readonly config: {
    readonly name: string;
    readonly kubeconfig?: string;
    readonly cniDir?: string;
    readonly namingScheme?: string;
    readonly daemonSocket?: string;
  };
}

export interface InstallReport {
  readonly binaries: ReadonlyArray<
    { readonly program: CniProgram; readonly path: string; readonly kind: "compiled" | "launcher" }
  >;
  readonly config: string;
}

/** A launcher embeds paths in a shell script: only plain paths are accepted, never anything a shell interprets. */
const safePath = (what: string, p: string) =>
  /^\/[A-Za-z0-9._\/+@:-]*$/.test(p)
    ? Effect.succeed(p)
    : Effect.fail(new InstallError({ what, reason: `"${p}" is not a plain absolute path` }));

/**
 * The client imports nothing but relative modules, so the launcher skips deno.json and the lock file: that halves
 * Deno's start-up (measured ~22 ms → ~10 ms wall), which every pod's ADD pays once per client and delegate.
 */
export function launcherScript(program: CniProgram, deno: string, repo: string, denoDir?: string): string {
  const env = denoDir ? `DENO_DIR=${denoDir} ` : "";
  return `#!/bin/sh
# danm ${program} launcher, written by danm's installer: no compiled binary was available, so this runs
# the plugin from source with Deno (modules are cached; nothing is downloaded at run time).
${env}exec ${deno} run --cached-only --no-config --no-lock --no-prompt --allow-env --allow-read --allow-write --allow-net ${repo}/cmd/${program}.ts "$@"
`;
}

export const installCni = (opts: InstallOptions) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    const binaries: Array<InstallReport["binaries"][number]> = [];
    yield* fs.mkdir(opts.binDir);
    yield* fs.mkdir(opts.confDir);
    for (const program of cniPrograms) {
      const path = `${opts.binDir}/${program}`;
      const compiled = opts.compiledDir ? `${opts.compiledDir}/${program}` : undefined;
      if (compiled && (yield* fs.exists(compiled))) {
        yield* fs.writeAtomic(path, yield* fs.readBytes(compiled), { mode: 0o755 });
        binaries.push({ program, path, kind: "compiled" });
        continue;
      }
      if (!opts.launcher) {
        return yield* new InstallError({
          what: program,
          reason: `no compiled binary${compiled ? ` at ${compiled}` : ""} and no launcher configured`,
        });
      }
      const deno = yield* safePath("launcher deno", opts.launcher.deno);
      const repo = yield* safePath("launcher repo", opts.launcher.repo);
      const denoDir = opts.launcher.denoDir ? yield* safePath("launcher DENO_DIR", opts.launcher.denoDir) : undefined;
      yield* fs.writeAtomic(path, launcherScript(program, deno, repo, denoDir), { mode: 0o755 });
      binaries.push({ program, path, kind: "launcher" });
    }
    const c = opts.config;
    const conf = {
      cniVersion: configFallbackVersion,
      cniVersions: [...supportedVersions],
      name: c.name,
      plugins: [{
        type: "danm",
        ...(c.kubeconfig ? { kubeconfig: c.kubeconfig } : {}),
        ...(c.cniDir ? { cniDir: c.cniDir } : {}),
        ...(c.namingScheme ? { namingScheme: c.namingScheme } : {}),
        ...(c.daemonSocket ? { daemonSocket: c.daemonSocket } : {}),
      }],
    };
    const config = `${opts.confDir}/${configFileName}`;
    yield* fs.writeAtomic(config, JSON.stringify(conf, null, 2) + "\n", { mode: 0o644 });
    yield* fs.remove(`${opts.confDir}/${previousConfigFileName}`, { force: true });
    return { binaries, config } satisfies InstallReport;
  });
