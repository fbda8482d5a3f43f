// The Fs port's contract, run against the live layer (in a temporary directory) and the memory twin.
import { Deferred, Effect, Fiber, type Layer, Queue, type Scope, Stream } from "effect";
import { Fs, type FsService } from "../../core/ports/filesystem.ts";
import { assert, assertEquals, assertMatch, fail } from "../harness/assert.ts";

export interface FsContractEnv {
  readonly layer: Layer.Layer<Fs>;
  /** A directory the tests may use (created by the suite if missing). */
  readonly root: string;
  readonly release: () => Promise<void>;
}

export function fsContract(suite: string, env: () => Promise<FsContractEnv>): void {
  const test = (title: string, body: (fs: FsService, root: string) => Effect.Effect<void, unknown, Scope.Scope>) =>
    Deno.test(`${suite}: ${title}`, async () => {
      const e = await env();
      try {
        await Effect.runPromise(
          Effect.scoped(Effect.gen(function* () {
            const fs = yield* Fs;
            yield* fs.mkdir(e.root);
            yield* body(fs, e.root);
          })).pipe(Effect.provide(e.layer)),
        );
      } finally {
        await e.release();
      }
    });

  test(
    "writeAtomic then read text and bytes; a second write replaces the content",
    (fs, root) =>
      Effect.gen(function* () {
        const p = `${root}/a.conf`;
        yield* fs.writeAtomic(p, "first");
        assertEquals(yield* fs.readText(p), "first");
        const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
        yield* fs.writeAtomic(p, bytes);
        assertEquals([...(yield* fs.readBytes(p))], [...bytes]);
        yield* fs.writeAtomic(p, "third");
        assertEquals(yield* fs.readText(p), "third");
      }),
  );

  test("writeAtomic sets the exact mode and leaves no temporary file behind", (fs, root) =>
    Effect.gen(function* () {
      yield* fs.writeAtomic(`${root}/secret.key`, "k", { mode: 0o600 });
      yield* fs.writeAtomic(`${root}/group.conf`, "g", { mode: 0o640 });
      yield* fs.writeAtomic(`${root}/plain.conf`, "p");
      assertEquals((yield* fs.stat(`${root}/secret.key`)).mode, 0o600);
      assertEquals((yield* fs.stat(`${root}/group.conf`)).mode, 0o640);
      assertEquals((yield* fs.stat(`${root}/plain.conf`)).mode, 0o644);
      assertEquals((yield* fs.readDir(root)).map((e) => e.name), ["group.conf", "plain.conf", "secret.key"]);
    }));

  test(
    "writeAtomic into a missing directory fails with FsNotFound; onto a directory with FsIoError",
    (fs, root) =>
      Effect.gen(function* () {
        const missing = yield* Effect.flip(fs.writeAtomic(`${root}/nope/a`, "x"));
        assertEquals(missing._tag, "FsNotFound");
        yield* fs.mkdir(`${root}/dir`);
        const onDir = yield* Effect.flip(fs.writeAtomic(`${root}/dir`, "x"));
        assert(onDir._tag === "FsIoError" || onDir._tag === "FsAlreadyExists", `got ${onDir._tag}`);
      }),
  );

  test(
    "reading a missing file fails with FsNotFound naming the path; reading a directory fails",
    (fs, root) =>
      Effect.gen(function* () {
        const err = yield* Effect.flip(fs.readText(`${root}/missing`));
        assertEquals(err._tag, "FsNotFound");
        assertMatch(err.message, new RegExp(`^read ${root}/missing: no such file`));
        yield* fs.mkdir(`${root}/d`);
        assertEquals((yield* Effect.flip(fs.readText(`${root}/d`)))._tag, "FsIoError");
      }),
  );

  test(
    "mkdir creates missing parents and accepts an existing directory; exists reports both ways",
    (fs, root) =>
      Effect.gen(function* () {
        const deep = `${root}/x/y/z`;
        assertEquals(yield* fs.exists(deep), false);
        yield* fs.mkdir(deep);
        yield* fs.mkdir(deep);
        assertEquals(yield* fs.exists(deep), true);
        assertEquals((yield* fs.stat(`${root}/x/y`)).kind, "directory");
        yield* fs.writeAtomic(`${root}/file`, "");
        assertEquals((yield* Effect.flip(fs.mkdir(`${root}/file`)))._tag, "FsAlreadyExists");
      }),
  );

  test("readDir lists entries sorted by name with their kinds", (fs, root) =>
    Effect.gen(function* () {
      yield* fs.writeAtomic(`${root}/b`, "");
      yield* fs.mkdir(`${root}/a`);
      yield* fs.writeAtomic(`${root}/c`, "");
      assertEquals(yield* fs.readDir(root), [
        { name: "a", kind: "directory" },
        { name: "b", kind: "file" },
        { name: "c", kind: "file" },
      ]);
      assertEquals((yield* Effect.flip(fs.readDir(`${root}/none`)))._tag, "FsNotFound");
    }));

  test(
    "remove: files, missing paths (force), non-empty directories only recursively",
    (fs, root) =>
      Effect.gen(function* () {
        yield* fs.writeAtomic(`${root}/f`, "");
        yield* fs.remove(`${root}/f`);
        assertEquals(yield* fs.exists(`${root}/f`), false);
        assertEquals((yield* Effect.flip(fs.remove(`${root}/f`)))._tag, "FsNotFound");
        yield* fs.remove(`${root}/f`, { force: true });
        yield* fs.mkdir(`${root}/d/e`);
        yield* fs.writeAtomic(`${root}/d/e/g`, "");
        assertEquals((yield* Effect.flip(fs.remove(`${root}/d`)))._tag, "FsIoError");
        yield* fs.remove(`${root}/d`, { recursive: true });
        assertEquals(yield* fs.exists(`${root}/d`), false);
      }),
  );

  test("stat reports kind, size and modification time", (fs, root) =>
    Effect.gen(function* () {
      const before = Date.now() - 2000;
      yield* fs.writeAtomic(`${root}/s`, "12345");
      const s = yield* fs.stat(`${root}/s`);
      assertEquals([s.kind, s.size], ["file", 5]);
      assert(s.mtimeMs >= before, "mtime is recent");
      assertEquals((yield* Effect.flip(fs.stat(`${root}/none`)))._tag, "FsNotFound");
    }));

  test("lock is exclusive until its scope closes", (fs, root) =>
    Effect.gen(function* () {
      const p = `${root}/ipam.lock`;
      const order: string[] = [];
      const releaseA = yield* Deferred.make<void>();
      const a = yield* Effect.forkScoped(Effect.scoped(Effect.gen(function* () {
        yield* fs.lock(p);
        order.push("A locked");
        yield* Deferred.await(releaseA);
        order.push("A releases");
      })));
      while (order.length === 0) yield* Effect.sleep("5 millis");
      const b = yield* Effect.forkScoped(Effect.scoped(Effect.gen(function* () {
        yield* fs.lock(p);
        order.push("B locked");
      })));
      yield* Effect.sleep("200 millis");
      assertEquals(order, ["A locked"], "B waits while A holds the lock");
      yield* Deferred.succeed(releaseA, undefined);
      yield* Fiber.join(a);
      yield* Fiber.join(b).pipe(Effect.timeoutOrElse({
        duration: "5 seconds",
        orElse: () => Effect.sync(() => fail("B never got the lock")),
      }));
      assertEquals(order, ["A locked", "A releases", "B locked"]);
      assert(yield* fs.exists(p), "the lock file exists");
    }));

  test("watch reports changes to files below a directory", (fs, root) =>
    Effect.gen(function* () {
      const dir = `${root}/certs`;
      yield* fs.mkdir(dir);
      const q = yield* Queue.unbounded<ReadonlyArray<string>>();
      yield* fs.watch(dir).pipe(Stream.runForEach((c) => Queue.offer(q, c.paths)), Effect.forkScoped);
      const target = `${dir}/tls.crt`;
      // The watcher starts asynchronously: write until a change shows up.
      const seen = yield* Effect.gen(function* () {
        for (let i = 0; i < 50; i++) {
          yield* fs.writeAtomic(target, `cert ${i}`);
          const got = yield* Effect.timeoutOption(Queue.take(q), "100 millis");
          if (got._tag === "Some") return true;
        }
        return false;
      });
      assert(seen, "a change was reported");
      // Drain, then a removal must be reported with the path.
      yield* Effect.sleep("50 millis");
      yield* Queue.clear(q);
      yield* fs.remove(target);
      const paths = yield* Effect.timeoutOrElse(Queue.take(q), {
        duration: "5 seconds",
        orElse: () => Effect.sync(() => fail("removal not reported")),
      });
      assert(paths.includes(target), `removal names ${target}: ${JSON.stringify(paths)}`);
    }));
}
