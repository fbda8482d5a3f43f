// Runs a script inside a private network and mount namespace (as root): the namespaces, links and loopback
// servers it creates stay invisible to the machine and vanish with it.
import { run } from "./proc.ts";

/** Set in the environment of everything isolated() runs: mounts made there stay private to its namespace. */
export const privateMountsEnv = "DANM_PRIVATE_MOUNTS";

/**
 * Outside: re-runs `script` with `args` under `unshare --net --mount` (passing `env`) and returns its exit code.
 * Inside (`marker` set in the environment): prepares the namespace — loopback up, a private tmpfs on /run/netns
 * so named netns vanish with the run — and returns undefined, meaning "carry on here".
 */
export async function isolated(
  marker: string,
  script: string,
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
): Promise<number | undefined> {
  if (!Deno.env.get(marker)) {
    if (Deno.uid() !== 0) throw new Error(`${script} needs root (network namespaces)`);
    const child = new Deno.Command("unshare", {
      args: ["--net", "--mount", "--propagation", "private", "--", Deno.execPath(), "run", "-A", script, ...args],
      env: { ...env, [marker]: "1", [privateMountsEnv]: "1" },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    return (await child.status).code;
  }
  await run(["ip", "link", "set", "lo", "up"]);
  await Deno.mkdir("/run/netns", { recursive: true });
  await run(["mount", "-t", "tmpfs", "danm-isolated-netns", "/run/netns"]);
  return undefined;
}
