// The live filesystem layer over Deno's APIs.
import { Effect, Layer, Stream } from "effect";
import {
  type DirEntry,
  type FileInfo,
  Fs,
  FsAlreadyExists,
  type FsChange,
  type FsError,
  FsIoError,
  FsNotFound,
  FsPermissionDenied,
  type FsService,
} from "../../core/ports/filesystem.ts";

const mapError = (op: string, path: string) => (e: unknown): FsError => {
  const f = { op, path, detail: e instanceof Error ? e.message : String(e) };
  if (e instanceof Deno.errors.NotFound) return new FsNotFound(f);
  if (e instanceof Deno.errors.AlreadyExists) return new FsAlreadyExists(f);
  if (e instanceof Deno.errors.PermissionDenied) return new FsPermissionDenied(f);
  return new FsIoError(f);
};

const attempt = <A>(op: string, path: string, f: () => Promise<A>): Effect.Effect<A, FsError> =>
  Effect.tryPromise({ try: f, catch: mapError(op, path) });

const kindOf = (i: { isFile: boolean; isDirectory: boolean; isSymlink: boolean }): DirEntry["kind"] =>
  i.isFile ? "file" : i.isDirectory ? "directory" : i.isSymlink ? "symlink" : "other";

/** A rename (how atomic writes and Kubernetes' secret volumes replace files) changes what is at its paths. */
const changeKind: Partial<Record<Deno.FsEvent["kind"], FsChange["kind"]>> = {
  create: "create",
  modify: "modify",
  rename: "modify",
  remove: "remove",
};

const dirname = (p: string) => p.slice(0, Math.max(p.lastIndexOf("/"), 1));
const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);

async function writeAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // Same directory: rename(2) is atomic only within one filesystem. The dot prefix keeps it out of globs.
  const tmp = `${dirname(path)}/.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(tmp, { write: true, createNew: true, mode });
  try {
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    await file.syncData();
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  file.close();
  try {
    // The mode given to open is filtered by the umask; set it exactly.
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

export const makeLiveFs = (): FsService => ({
  readText: (path) => attempt("read", path, () => Deno.readTextFile(path)),
  readBytes: (path) => attempt("read", path, () => Deno.readFile(path)),
  writeAtomic: (path, data, options = {}) =>
    attempt("write", path, () => writeAtomic(path, data, options.mode ?? 0o644)),
  readDir: (path) =>
    attempt("readDir", path, async () => {
      const out: DirEntry[] = [];
      for await (const e of Deno.readDir(path)) out.push({ name: e.name, kind: kindOf(e) });
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }),
  exists: (path) =>
    Effect.tryPromise({ try: () => Deno.stat(path), catch: mapError("stat", path) }).pipe(
      Effect.as(true),
      Effect.catchTag("FsNotFound", () => Effect.succeed(false)),
    ),
  remove: (path, options = {}) =>
    attempt("remove", path, () => Deno.remove(path, { recursive: options.recursive ?? false })).pipe(
      Effect.catchTag("FsNotFound", (e) => (options.force ? Effect.void : Effect.fail(e))),
    ),
  mkdir: (path, options = {}) =>
    attempt(
      "mkdir",
      path,
      () => Deno.mkdir(path, { recursive: true, ...(options.mode ? { mode: options.mode } : {}) }),
    ),
  stat: (path) =>
    attempt("stat", path, async (): Promise<FileInfo> => {
      const s = await Deno.stat(path);
      return { kind: kindOf(s), size: s.size, mode: (s.mode ?? 0) & 0o7777, mtimeMs: s.mtime?.getTime() ?? 0 };
    }),
  lock: (path) =>
    Effect.gen(function* () {
      const file = yield* Effect.acquireRelease(
        attempt("lock", path, () => Deno.open(path, { read: true, write: true, create: true, mode: 0o600 })),
        // Closing the file drops the lock, also when we were interrupted while still waiting for it.
        (f) => Effect.sync(() => f.close()),
      );
      yield* attempt("lock", path, () => file.lock(true));
    }),
  watch: (path) =>
    Stream.unwrap(Effect.gen(function* () {
      const watcher = yield* Effect.acquireRelease(
        Effect.try({ try: () => Deno.watchFs(path, { recursive: true }), catch: mapError("watch", path) }),
        (w) => Effect.sync(() => w.close()),
      );
      return Stream.fromAsyncIterable(watcher, mapError("watch", path)).pipe(
        Stream.map((e): FsChange => ({ kind: changeKind[e.kind] ?? "other", paths: e.paths })),
      );
    })),
});

export const layerLiveFs: Layer.Layer<Fs> = Layer.succeed(Fs, makeLiveFs());
