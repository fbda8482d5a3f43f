// The OCI writer behind `deno task images` (k8s/images/oci.ts): the same trees give the same bytes and digests
// (reproducible images), shared layers are stored once, and the layout is what containerd's import reads.
import { writeOciLayout } from "../../../k8s/images/oci.ts";
import { components } from "../../../k8s/images/build.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";

async function tree(root: string, files: Record<string, string>, mtime: Date): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(`${root}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeTextFile(`${root}/${path}`, text);
    await Deno.utime(`${root}/${path}`, mtime, mtime);
  }
}

Deno.test("oci: the same trees give the same digests, whatever the files' times; shared layers stored once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-oci-" });
  try {
    const build = async (name: string, mtime: Date) => {
      await tree(
        `${dir}/${name}/base`,
        { "usr/bin/tool": "#!/bin/sh\n", "etc/passwd": "root:x:0:0::/:/bin/sh\n" },
        mtime,
      );
      await tree(`${dir}/${name}/a`, { "opt/a.ts": "console.log('a')\n" }, mtime);
      await tree(`${dir}/${name}/b`, { "opt/b.ts": "console.log('b')\n" }, mtime);
      const config = { user: "65532:65532", env: ["PATH=/usr/bin"], entrypoint: ["/usr/bin/tool"] };
      const images = await writeOciLayout(`${dir}/${name}/layout`, [
        { ref: "localhost/a:t", layers: [{ dir: `${dir}/${name}/base` }, { dir: `${dir}/${name}/a` }], config },
        { ref: "localhost/b:t", layers: [{ dir: `${dir}/${name}/base` }, { dir: `${dir}/${name}/b` }], config },
      ]);
      const blobs = [...Deno.readDirSync(`${dir}/${name}/layout/blobs/sha256`)].map((e) => e.name).sort();
      return { images, blobs, index: await Deno.readTextFile(`${dir}/${name}/layout/index.json`) };
    };
    const one = await build("one", new Date(2020, 0, 1)), two = await build("two", new Date(2024, 5, 6));
    assertEquals(two.images, one.images, "same manifest digests");
    assertEquals(two.index, one.index);
    assertEquals(two.blobs, one.blobs);
    // 3 layers (the base once), 2 configs, 2 manifests.
    assertEquals(one.blobs.length, 7);
    for (const b of one.blobs) {
      const bytes = await Deno.readFile(`${dir}/one/layout/blobs/sha256/${b}`);
      const hex = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
        .map((x) => x.toString(16).padStart(2, "0")).join("");
      assertEquals(hex, b, "blobs are named by their content");
    }
    const index = JSON.parse(one.index);
    assertEquals(
      index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations["io.containerd.image.name"]),
      ["localhost/a:t", "localhost/b:t"],
    );
    const manifest = JSON.parse(
      await Deno.readTextFile(`${dir}/one/layout/blobs/sha256/${one.images[0].manifestDigest.slice(7)}`),
    );
    const config = JSON.parse(
      await Deno.readTextFile(`${dir}/one/layout/blobs/sha256/${manifest.config.digest.slice(7)}`),
    );
    assertEquals(config.rootfs.diff_ids, manifest.layers.map((l: { digest: string }) => l.digest));
    assertEquals([config.config.User, config.config.Entrypoint], ["65532:65532", ["/usr/bin/tool"]]);
    // Layer entries are root-owned with mtime 0.
    const listing = new TextDecoder().decode(
      (await new Deno.Command("tar", {
        args: ["-tvf", `${dir}/one/layout/blobs/sha256/${manifest.layers[0].digest.slice(7)}`, "--numeric-owner"],
        stdout: "piped",
      }).output()).stdout,
    );
    for (const line of listing.trim().split("\n")) assertMatch(line, /^\S+ 0\/0 .* 1970-01-01 /, line);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("images: one per component, each with an entry point of its own and a non-root user but the node's", () => {
  assertEquals(components.map((c) => c.name), ["danm-node", "danm-webhook", "danm-svcwatcher"]);
  for (const c of components) {
    assert(c.entries.length > 0, c.name);
    assertEquals(c.entrypoint.at(-1), `/opt/danm/${c.entries[0]}`, `${c.name} runs its first entry point`);
    if (c.name !== "danm-node") assertEquals(c.user, "65532:65532", c.name);
  }
});
