// The in-memory filesystem twin: a tree of files and directories with POSIX-like errors, per-path exclusive
// locks and change notifications. Permission bits are stored, not enforced; there are no symlinks.
import { Effect, Layer, Queue, Semaphore, Stream } from "effect";
import {
  type DirEntry,
  Fs,
  FsAlreadyExists,
  type FsChange,
  type FsError,
  FsIoError,
  FsNotFound,
  type FsService,
} from "../../core/ports/filesystem.ts";

type Node =
  | { readonly kind: "file"; readonly data: Uint8Array; readonly mode: number; readonly mtimeMs: number }
  | { readonly kind: "directory"; readonly mode: number; readonly mtimeMs: number };

/**
 * A typed error thrown out of a synchronous step and caught by run(). Not an Error: no second stack trace per
 * failure (a missing file is an everyday answer — every ADD looks for an earlier sandbox record).
 */
class Failure {
  constructor(readonly error: FsError) {}
}

/**
 * A missing file is an answer (a new sandbox has no record yet), not a bug: its error is built without the stack
 * trace every Error captures (that capture was ~0.8 % of a 10,000-pod simulation's CPU).
 */
function notFound(op: string, path: string): FsNotFound {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new FsNotFound({ op, path, detail: "" });
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export class MemoryFileSystem {
  private readonly nodes = new Map<string, Node>([["/", { kind: "directory", mode: 0o755, mtimeMs: Date.now() }]]);
  /** Each directory's entries (full paths): a listing or a removal reads its own directory, not every path. */
  private readonly entries = new Map<string, Set<string>>();
  private readonly locks = new Map<string, Semaphore.Semaphore>();
  private readonly listeners = new Set<(change: FsChange) => void>();

  /** Creates files (and their directories) synchronously: test and simulation setup. */
  seed(files: Readonly<Record<string, string | Uint8Array>>): this {
    for (const [path, data] of Object.entries(files)) {
      const p = this.norm("seed", path);
      this.mkdirp("seed", parentOf(p), 0o755);
      this.put(p, data, 0o644);
    }
    return this;
  }

  /** Every file's content as text, keyed by path. */
  files(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [p, n] of [...this.nodes].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (n.kind === "file") out[p] = new TextDecoder().decode(n.data);
    }
    return out;
  }

  private norm(op: string, path: string): string {
    if (!path.startsWith("/")) throw new Failure(new FsIoError({ op, path, detail: "path must be absolute" }));
    const parts: string[] = [];
    for (const seg of path.split("/")) {
      if (seg === "" || seg === ".") continue;
      if (seg === "..") parts.pop();
      else parts.push(seg);
    }
    return `/${parts.join("/")}`;
  }

  private notify(kind: FsChange["kind"], path: string): void {
    for (const l of this.listeners) l({ kind, paths: [path] });
  }

  private node(op: string, path: string): Node {
    const n = this.nodes.get(path);
    if (n) return n;
    // A missing ancestor or a file in the way reads as "no such file" (or ENOTDIR) like the kernel does.
    for (let p = parentOf(path); p !== "/"; p = parentOf(p)) {
      if (this.nodes.get(p)?.kind === "file") throw new Failure(new FsIoError({ op, path, detail: "not a directory" }));
    }
    throw new Failure(notFound(op, path));
  }

  private dirFor(op: string, path: string): void {
    const parent = this.nodes.get(parentOf(path));
    if (!parent) throw new Failure(new FsNotFound({ op, path, detail: "parent directory does not exist" }));
    if (parent.kind !== "directory") throw new Failure(new FsIoError({ op, path, detail: "not a directory" }));
  }

  private put(path: string, data: string | Uint8Array, mode: number): void {
    const existed = this.nodes.has(path);
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data.slice();
    this.setNode(path, { kind: "file", data: bytes, mode, mtimeMs: Date.now() });
    this.notify(existed ? "modify" : "create", path);
  }

  private mkdirp(op: string, path: string, mode: number): void {
    const parts = path.split("/").filter(Boolean);
    let cur = "";
    for (const part of parts) {
      cur = `${cur}/${part}`;
      const n = this.nodes.get(cur);
      if (n?.kind === "file") {
        throw new Failure(
          cur === path
            ? new FsAlreadyExists({ op, path, detail: "a file" })
            : new FsIoError({ op, path, detail: "not a directory" }),
        );
      }
      if (!n) {
        this.setNode(cur, { kind: "directory", mode, mtimeMs: Date.now() });
        this.notify("create", cur);
      }
    }
  }

  private children(path: string): string[] {
    return [...this.entries.get(path) ?? []];
  }

  private setNode(path: string, node: Node): void {
    if (!this.nodes.has(path)) {
      const parent = parentOf(path);
      let siblings = this.entries.get(parent);
      if (!siblings) this.entries.set(parent, siblings = new Set());
      siblings.add(path);
    }
    this.nodes.set(path, node);
  }

  /** Removes a path and everything below it. */
  private deleteTree(path: string): void {
    for (const child of this.entries.get(path) ?? []) this.deleteTree(child);
    this.entries.delete(path);
    this.entries.get(parentOf(path))?.delete(path);
    this.nodes.delete(path);
  }

  private run<A>(f: () => A): Effect.Effect<A, FsError> {
    return Effect.suspend(() => {
      try {
        return Effect.succeed(f());
      } catch (e) {
        return e instanceof Failure ? Effect.fail(e.error) : Effect.die(e);
      }
    });
  }

  readonly service: FsService = {
    readText: (path) => Effect.map(this.service.readBytes(path), (b) => new TextDecoder().decode(b)),
    readBytes: (path) =>
      this.run(() => {
        const p = this.norm("read", path);
        const n = this.node("read", p);
        if (n.kind !== "file") throw new Failure(new FsIoError({ op: "read", path, detail: "is a directory" }));
        return n.data.slice();
      }),
    writeAtomic: (path, data, options = {}) =>
      this.run(() => {
        const p = this.norm("write", path);
        this.dirFor("write", p);
        if (this.nodes.get(p)?.kind === "directory") {
          throw new Failure(new FsIoError({ op: "write", path, detail: "is a directory" }));
        }
        this.put(p, data, options.mode ?? 0o644);
      }),
    readDir: (path) =>
      this.run(() => {
        const p = this.norm("readDir", path);
        if (this.node("readDir", p).kind !== "directory") {
          throw new Failure(new FsIoError({ op: "readDir", path, detail: "not a directory" }));
        }
        return this.children(p)
          .map((c): DirEntry => ({ name: c.slice(c.lastIndexOf("/") + 1), kind: this.nodes.get(c)!.kind }))
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      }),
    exists: (path) => this.run(() => this.nodes.has(this.norm("stat", path))),
    remove: (path, options = {}) =>
      this.run(() => {
        const p = this.norm("remove", path);
        if (!this.nodes.has(p)) {
          if (options.force) return;
          this.node("remove", p);
        }
        if (p === "/") throw new Failure(new FsIoError({ op: "remove", path, detail: "cannot remove /" }));
        if ((this.entries.get(p)?.size ?? 0) > 0 && !options.recursive) {
          throw new Failure(new FsIoError({ op: "remove", path, detail: "directory not empty" }));
        }
        this.deleteTree(p);
        this.notify("remove", p);
      }),
    mkdir: (path, options = {}) =>
      this.run(() => this.mkdirp("mkdir", this.norm("mkdir", path), options.mode ?? 0o755)),
    stat: (path) =>
      this.run(() => {
        const n = this.node("stat", this.norm("stat", path));
        return { kind: n.kind, size: n.kind === "file" ? n.data.length : 0, mode: n.mode, mtimeMs: n.mtimeMs };
      }),
    lock: (path) =>
      Effect.flatMap(
        this.run(() => {
          const p = this.norm("lock", path);
          if (!this.nodes.has(p)) {
            this.dirFor("lock", p);
            this.put(p, "", 0o600);
          }
          let sem = this.locks.get(p);
          if (!sem) this.locks.set(p, sem = Semaphore.makeUnsafe(1));
          return sem;
        }),
        (sem) => Effect.acquireRelease(sem.take(1), () => sem.release(1)),
      ).pipe(Effect.asVoid),
    watch: (path) =>
      Stream.callback<FsChange, FsError>((queue) =>
        Effect.flatMap(
          this.run(() => {
            const p = this.norm("watch", path);
            this.node("watch", p);
            return p;
          }),
          (p) => {
            const listener = (c: FsChange) => {
              if (c.paths.some((x) => x === p || x.startsWith(p === "/" ? "/" : `${p}/`))) Queue.offerUnsafe(queue, c);
            };
            return Effect.acquireRelease(
              Effect.sync(() => this.listeners.add(listener)),
              () => Effect.sync(() => this.listeners.delete(listener)),
            );
          },
        )
      ),
  };
}

const parentOf = (p: string) => (p.lastIndexOf("/") <= 0 ? "/" : p.slice(0, p.lastIndexOf("/")));

export const layerMemoryFs = (fs: MemoryFileSystem = new MemoryFileSystem()): Layer.Layer<Fs> =>
  Layer.succeed(Fs, fs.service);
