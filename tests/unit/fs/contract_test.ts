// The Fs contract against the live layer (a temporary directory) and the memory twin.
import { layerLiveFs } from "../../../adapters/fs/live.ts";
import { layerMemoryFs, MemoryFileSystem } from "../../../adapters/fs/memory.ts";
import { fsContract } from "../../contract/filesystem.ts";

fsContract("live fs", async () => {
  const root = await Deno.makeTempDir({ prefix: "danm-fs-" });
  return { layer: layerLiveFs, root, release: () => Deno.remove(root, { recursive: true }) };
});

fsContract("memory fs", () =>
  Promise.resolve({
    layer: layerMemoryFs(new MemoryFileSystem()),
    root: "/var/lib/danm-test",
    release: () => Promise.resolve(),
  }));
