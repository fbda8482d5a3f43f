// A minimal, deterministic OCI image writer: directory trees become uncompressed tar layers (GNU tar, sorted names,
// mtime 0, owner root), layers and configs become content-addressed blobs, and the images one OCI layout whose
// index names each image. Same inputs, same bytes, same digests: images built twice are the same images.
//
// No container engine, no registry: the layout is what `ctr images import`, `skopeo copy oci-archive:…` and
// `podman load` read.

export interface LayerSource {
  /** A directory whose contents become the layer's root. */
  readonly dir: string;
}

export interface ImageConfig {
  readonly user: string;
  readonly env: ReadonlyArray<string>;
  readonly entrypoint: ReadonlyArray<string>;
  readonly workingDir?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface ImageDefinition {
  /** The full reference, e.g. `localhost/danm-node:0123abcd`. */
  readonly ref: string;
  readonly layers: ReadonlyArray<LayerSource>;
  readonly config: ImageConfig;
}

export interface WrittenImage {
  readonly ref: string;
  /** sha256:… of the image manifest: what a runtime reports as the image's digest. */
  readonly manifestDigest: string;
}

interface Blob {
  readonly digest: string;
  readonly size: number;
}

async function run(argv: ReadonlyArray<string>, opts: { cwd?: string; stdout?: "piped" | "null" } = {}) {
  const [cmd, ...args] = argv;
  const out = await new Deno.Command(cmd, { args, cwd: opts.cwd, stdout: opts.stdout ?? "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`${argv.join(" ")} exited with ${out.code}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function sha256File(path: string): Promise<string> {
  return (await run(["sha256sum", path])).split(" ")[0];
}

async function putFile(blobs: string, path: string): Promise<Blob> {
  const hex = await sha256File(path);
  const size = (await Deno.stat(path)).size;
  await Deno.rename(path, `${blobs}/${hex}`);
  return { digest: `sha256:${hex}`, size };
}

async function putJson(blobs: string, value: unknown): Promise<Blob> {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const hex = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  await Deno.writeFile(`${blobs}/${hex}`, bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** A layer tar of `dir`, reproducible: sorted, mtime 0, root-owned, no access/change times. */
async function tarLayer(dir: string, out: string): Promise<void> {
  await run([
    "tar",
    "--create",
    "--file",
    out,
    "--directory",
    dir,
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=gnu",
    ".",
  ]);
}

const layerType = "application/vnd.oci.image.layer.v1.tar";

/** Writes the images into a new OCI layout at `layoutDir` (created; must not exist). Shared layers are written once. */
export async function writeOciLayout(
  layoutDir: string,
  images: ReadonlyArray<ImageDefinition>,
): Promise<WrittenImage[]> {
  const blobs = `${layoutDir}/blobs/sha256`;
  await Deno.mkdir(blobs, { recursive: true });
  const layerOf = new Map<string, Blob>();
  const layer = async (src: LayerSource) => {
    const known = layerOf.get(src.dir);
    if (known) return known;
    const tmp = `${layoutDir}/layer.tar`;
    await tarLayer(src.dir, tmp);
    const blob = await putFile(blobs, tmp);
    layerOf.set(src.dir, blob);
    return blob;
  };
  const manifests: Array<{ mediaType: string; digest: string; size: number; annotations: Record<string, string> }> = [];
  const written: WrittenImage[] = [];
  for (const image of images) {
    const layers: Blob[] = [];
    for (const l of image.layers) layers.push(await layer(l));
    const config = await putJson(blobs, {
      architecture: "amd64",
      os: "linux",
      config: {
        User: image.config.user,
        Env: [...image.config.env],
        Entrypoint: [...image.config.entrypoint],
        ...(image.config.workingDir ? { WorkingDir: image.config.workingDir } : {}),
        ...(image.config.labels ? { Labels: { ...image.config.labels } } : {}),
      },
      // Uncompressed layers: the diff ID is the layer's digest.
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
    });
    const manifest = await putJson(blobs, {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((l) => ({ mediaType: layerType, ...l })),
    });
    manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...manifest,
      annotations: {
        // containerd's import takes the full name from here; OCI tools from ref.name.
        "io.containerd.image.name": image.ref,
        "org.opencontainers.image.ref.name": image.ref,
      },
    });
    written.push({ ref: image.ref, manifestDigest: manifest.digest });
  }
  await Deno.writeTextFile(`${layoutDir}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await Deno.writeTextFile(`${layoutDir}/index.json`, JSON.stringify({ schemaVersion: 2, manifests }));
  return written;
}

/** The layout as one tar (an OCI archive), as `ctr images import` and `skopeo copy oci-archive:` read it. */
export async function archiveOciLayout(layoutDir: string, archive: string): Promise<void> {
  await tarLayer(layoutDir, archive);
}
