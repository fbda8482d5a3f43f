// The live CniListener: a unix socket (Deno.listen) answering one JSON request per connection. The thin client
// writes its request and closes its side; we read to EOF (bounded in size and time), run the handler and write
// the answer. Connections are served concurrently; closing the scope stops accepting, gives the connections that are
// still writing their answers a moment to finish, then closes the rest and removes the socket.
import { Effect, FiberSet, Layer, type Scope } from "effect";
import { CniListener, CniListenerError, type CniListenerService } from "../../core/ports/cni_listener.ts";

/** Largest request accepted: a CNI config with a big prevResult is a few KiB, a GC list of a full node some 10s. */
const maxRequestBytes = 1 << 20;
/** On close, how long connections may take to write the answers they have (the handler drains before that). */
const closeGraceMs = 2_000;
/** A client that does not finish sending its request within this is dropped. */
const readTimeoutMs = 10_000;

/** Closes `conn` once `ms` have passed; the returned function cancels that. */
function closeAfter(conn: Deno.UnixConn, ms: number): () => void {
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, ms);
  return () => clearTimeout(timer);
}

/** One request (or, for the probe, one answer): up to a newline or the end, bounded in size and time. */
async function readRequest(conn: Deno.UnixConn): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Small reads: a request is a few KiB, and a burst of busy answers means thousands of connections, each buffer a
  // malloc that fragments the process's heap (measured, 9,000 connections: +7 MiB heap with 16 KiB, +2 MiB with 4).
  const buf = new Uint8Array(4 << 10);
  const cancel = closeAfter(conn, readTimeoutMs);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      size += n;
      if (size > maxRequestBytes) throw new Error(`request larger than ${maxRequestBytes} bytes`);
      chunks.push(buf.slice(0, n));
      // The client sends one line; a newline means the request is complete even if it keeps the socket open.
      if (buf.subarray(0, n).includes(10)) break;
    }
  } finally {
    cancel();
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all);
}

async function writeAll(conn: Deno.UnixConn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

const serveConnection = (conn: Deno.UnixConn, handle: (request: unknown) => Effect.Effect<unknown>) =>
  Effect.gen(function* () {
    const text = yield* Effect.tryPromise(() => readRequest(conn));
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch {
      request = { malformed: text.slice(0, 200) };
    }
    const answer = yield* handle(request);
    yield* Effect.tryPromise(() => writeAll(conn, new TextEncoder().encode(JSON.stringify(answer) + "\n")));
  }).pipe(
    Effect.catch((e) => Effect.logWarning(`danm socket: dropped a connection: ${e}`)),
    Effect.ensuring(Effect.sync(() => {
      try {
        conn.close();
      } catch { /* closed by the client or the deadline */ }
    })),
  );

/** One request, as the thin client sends it, and the answer (bounded in time). */
async function roundTrip(path: string, request: unknown, timeoutMs: number): Promise<unknown> {
  const conn = await Deno.connect({ transport: "unix", path });
  const cancel = closeAfter(conn, timeoutMs);
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(request) + "\n"));
    await conn.closeWrite();
    const answer = await readRequest(conn);
    return JSON.parse(answer);
  } finally {
    cancel();
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

export const makeLiveCniListener = (): CniListenerService => ({
  probe: (path, request) =>
    Effect.tryPromise({
      try: () => roundTrip(path, request, 2_000),
      catch: (e) => new CniListenerError({ path, reason: `no answer: ${e instanceof Error ? e.message : e}` }),
    }),
  serve: (path, handle): Effect.Effect<void, CniListenerError, Scope.Scope> =>
    Effect.gen(function* () {
      const fail = (reason: string) => new CniListenerError({ path, reason });
      const dir = path.replace(/\/[^/]*$/, "") || "/";
      yield* Effect.tryPromise({
        try: async () => {
          await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
          // A socket left behind by an earlier daemon refuses the bind; nobody else may own this path.
          await Deno.remove(path).catch((e) => {
            if (!(e instanceof Deno.errors.NotFound)) throw e;
          });
        },
        catch: (e) => fail(String(e)),
      });
      // Only root (the runtime) may talk to the daemon: the socket carries no authentication of its own, so its file
      // is root's, mode 0600, and a non-root process cannot connect (EACCES). It is made in a private directory and
      // moved into place once restricted, so there is no moment at which another user could connect.
      const listener = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: async () => {
            const staging = await Deno.makeTempDir({ dir, prefix: ".danm-sock-" });
            try {
              const l = Deno.listen({ transport: "unix", path: `${staging}/s` });
              try {
                await Deno.chmod(`${staging}/s`, 0o600);
                await Deno.rename(`${staging}/s`, path);
              } catch (e) {
                l.close();
                throw e;
              }
              return l;
            } finally {
              await Deno.remove(staging, { recursive: true }).catch(() => {});
            }
          },
          catch: (e) => fail(String(e)),
        }),
        (l) =>
          Effect.sync(() => {
            try {
              l.close();
            } catch { /* already closed */ }
            try {
              Deno.removeSync(path);
            } catch { /* gone */ }
          }),
      );
      // Connections live in a set of their own, not in the scope: a scope interrupts its forks before running the
      // finalizers registered earlier, and the handler's drain must see them finish.
      const connections = yield* FiberSet.make();
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          try {
            listener.close();
          } catch { /* already closed */ }
        }).pipe(
          Effect.andThen(FiberSet.awaitEmpty(connections)),
          Effect.timeoutOrElse({ duration: closeGraceMs, orElse: () => Effect.void }),
        )
      );
      const acceptLoop = Effect.gen(function* () {
        while (true) {
          const conn = yield* Effect.tryPromise(() => listener.accept());
          yield* FiberSet.run(connections, serveConnection(conn, handle));
        }
      }).pipe(Effect.catch((e) => Effect.logDebug(`danm socket ${path}: accept loop ended: ${e}`)));
      yield* Effect.forkScoped(acceptLoop);
    }),
});

export const layerLiveCniListener: Layer.Layer<CniListener> = Layer.succeed(CniListener, makeLiveCniListener());
