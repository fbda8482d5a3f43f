// The filesystem as the core sees it: CNI config and state files, IPAM locks, webhook certificates.
// Live layer: adapters/fs/live.ts (Deno APIs); in-memory layer: adapters/fs/memory.ts. Paths are absolute.
import { Context, type Effect, Schema, type Scope, type Stream } from "effect";

const where = { op: Schema.String, path: Schema.String, detail: Schema.String };

export class FsNotFound extends Schema.TaggedError<FsNotFound>()("FsNotFound", where) {
  override get message(): string {
    return `${this.op} ${this.path}: no such file or directory${this.detail ? ` (${this.detail})` : ""}`;
  }
}

export class FsAlreadyExists extends Schema.TaggedError<FsAlreadyExists>()("FsAlreadyExists", where) {
  override get message(): string {
    return `${this.op} ${this.path}: already exists${this.detail ? ` (${this.detail})` : ""}`;
  }
}

export class FsPermissionDenied extends Schema.TaggedError<FsPermissionDenied>()("FsPermissionDenied", where) {
  override get message(): string {
    return `${this.op} ${this.path}: permission denied${this.detail ? ` (${this.detail})` : ""}`;
  }
}

/** Anything else: a directory where a file was expected (or the reverse), a non-empty directory, I/O errors. */
export class FsIoError extends Schema.TaggedError<FsIoError>()("FsIoError", where) {
  override get message(): string {
    return `${this.op} ${this.path}: ${this.detail}`;
  }
}

export type FsError = FsNotFound | FsAlreadyExists | FsPermissionDenied | FsIoError;

export interface DirEntry {
  readonly name: string;
  readonly kind: "file" | "directory" | "symlink" | "other";
}

export interface FileInfo {
  readonly kind: "file" | "directory" | "symlink" | "other";
  readonly size: number;
  /** Permission bits (e.g. 0o600). */
  readonly mode: number;
  readonly mtimeMs: number;
}

export interface FsChange {
  readonly kind: "create" | "modify" | "remove" | "other";
  readonly paths: ReadonlyArray<string>;
}

export interface FsService {
  readonly readText: (path: string) => Effect.Effect<string, FsError>;
  readonly readBytes: (path: string) => Effect.Effect<Uint8Array, FsError>;
  /**
   * Replaces the file atomically: readers see the old or the new content, never a mix. Written to a temporary
   * file in the same directory, flushed, given `mode` (default 0o644), then renamed over the target. The
   * directory must exist.
   */
  readonly writeAtomic: (
    path: string,
    data: string | Uint8Array,
    options?: { readonly mode?: number },
  ) => Effect.Effect<void, FsError>;
  /** Entries sorted by name. */
  readonly readDir: (path: string) => Effect.Effect<ReadonlyArray<DirEntry>, FsError>;
  readonly exists: (path: string) => Effect.Effect<boolean, FsError>;
  /** `force`: a missing path is not an error (rm -f). */
  readonly remove: (
    path: string,
    options?: { readonly recursive?: boolean; readonly force?: boolean },
  ) => Effect.Effect<void, FsError>;
  /** mkdir -p: creates missing parents, an existing directory is fine. */
  readonly mkdir: (path: string, options?: { readonly mode?: number }) => Effect.Effect<void, FsError>;
  /** Follows symlinks. */
  readonly stat: (path: string) => Effect.Effect<FileInfo, FsError>;
  /**
   * Holds an exclusive lock on `path` (created if missing) until the scope closes; waits while another holder
   * (in this or another process) has it.
   */
  readonly lock: (path: string) => Effect.Effect<void, FsError, Scope.Scope>;
  /** Changes below `path` (a file or a directory, recursively) until the stream is interrupted. */
  readonly watch: (path: string) => Stream.Stream<FsChange, FsError>;
}

export class Fs extends Context.Service<Fs, FsService>()("danm/core/ports/filesystem/Fs") {}
