// The danm images' cache is shared by every worktree and run on the machine (~/.cache/danm/images/danm): a build
// prunes older tags, but never one that another process leased — e.g. a test run that built its tag before moving
// into its private network namespace, where it could not build it again (k8s/images/build.ts leaseTag, prune).
import { leaseTag, prune } from "../../../k8s/images/build.ts";
import { assertEquals } from "../../harness/assert.ts";

async function tags(outDir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(outDir)) if (e.isDirectory && !e.name.startsWith(".")) names.push(e.name);
  return names.sort();
}

/** Another process holding a lease on `tag` until its stdin closes. */
async function leaseInOtherProcess(outDir: string, tag: string): Promise<{ release: () => Promise<void> }> {
  const build = new URL("../../../k8s/images/build.ts", import.meta.url).href;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { leaseTag } from ${JSON.stringify(build)};
       await leaseTag(${JSON.stringify(outDir)}, ${JSON.stringify(tag)});
       console.log("leased");
       for await (const _ of Deno.stdin.readable) { /* until the parent closes stdin */ }`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("leased")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the leasing process exited: ${out}`);
    out += value;
  }
  return {
    release: async () => {
      await child.stdin.close();
      await reader.cancel();
      await child.status;
    },
  };
}

Deno.test("images cache: a prune keeps the newest tags and every tag another process leased", async () => {
  const outDir = await Deno.makeTempDir({ prefix: "danm-images-lease-" });
  try {
    // t0 is the oldest; each tag a complete build.
    for (const [i, tag] of ["t0", "t1", "t2", "t3", "t4"].entries()) {
      await Deno.mkdir(`${outDir}/${tag}`);
      await Deno.writeTextFile(`${outDir}/${tag}/refs.json`, "{}\n");
      const t = new Date(Date.UTC(2026, 0, 1, 0, i));
      await Deno.utime(`${outDir}/${tag}`, t, t);
    }
    const other = await leaseInOtherProcess(outDir, "t0");
    try {
      // This process builds t4 and keeps 2 others: t3, t2; t1 goes; t0 is older but leased elsewhere, so it stays.
      await leaseTag(outDir, "t4");
      await prune(outDir, "t4", 2);
      assertEquals(await tags(outDir), ["t0", "t2", "t3", "t4"]);
    } finally {
      await other.release();
    }
    // The lease ends with its process: the next prune may take the tag.
    await prune(outDir, "t4", 2);
    assertEquals(await tags(outDir), ["t2", "t3", "t4"]);
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
});
