// The node daemon's socket refuses a non-root peer: the socket carries no authentication of its own, so only root
// (the container runtime) may connect. Proven with a real process running as uid/gid 65534 (setpriv) against the
// live listener, next to a control socket it can reach, and root's connection that is answered.
import { Effect, Exit, Scope } from "effect";
import { makeLiveCniListener } from "../../../adapters/cniserver/live.ts";
import { assertEquals } from "../../harness/assert.ts";
import { run } from "../../harness/proc.ts";

/** What a connection attempt by uid 65534 to `path` ends in: "connected" or the error's name. */
async function connectAsNobody(deno: string, home: string, path: string): Promise<string> {
  const code = `try { const c = await Deno.connect({ transport: "unix", path: ${JSON.stringify(path)} }); ` +
    `c.close(); console.log("connected"); } catch (e) { console.log(e.name); }`;
  const out = await new Deno.Command("setpriv", {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", "--", deno, "eval", "--no-config", code],
    env: { HOME: home, DENO_DIR: `${home}/deno`, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    clearEnv: true,
    stdin: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).trim() || new TextDecoder().decode(out.stderr).trim();
}

Deno.test("CNI socket: a non-root process is refused (EACCES), root is answered", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-peer-" });
  const scope = Scope.makeUnsafe();
  try {
    await Deno.chmod(dir, 0o755);
    const home = `${dir}/home`;
    await Deno.mkdir(home, { mode: 0o777 });
    await Deno.chmod(home, 0o777);
    // A deno the unprivileged user can execute (the cached one lives under root's 0700 home).
    const deno = `${dir}/deno`;
    await Deno.copyFile(Deno.execPath(), deno);
    await Deno.chmod(deno, 0o755);

    const socket = `${dir}/run/danm.sock`;
    const listener = makeLiveCniListener();
    await Effect.runPromise(
      listener.serve(socket, () => Effect.succeed({ code: 0, stdout: "pong", stderr: "" })).pipe(Scope.provide(scope)),
    );
    const st = await Deno.stat(socket);
    assertEquals([st.uid, (st.mode ?? 0) & 0o777], [0, 0o600], "the socket is root's, mode 0600");

    // Root's request is answered.
    const conn = await Deno.connect({ transport: "unix", path: socket });
    await conn.write(new TextEncoder().encode(JSON.stringify({ program: "danm", env: {}, stdin: "" }) + "\n"));
    await conn.closeWrite();
    assertEquals(JSON.parse(await new Response(conn.readable).text()).stdout, "pong");

    // The same unprivileged process reaches a socket that lets it in, and is refused by the daemon's.
    const open = `${dir}/run/open.sock`;
    const control = Deno.listen({ transport: "unix", path: open });
    try {
      await Deno.chmod(open, 0o666);
      assertEquals(await connectAsNobody(deno, home, open), "connected", "control: uid 65534 can connect at all");
      assertEquals(await connectAsNobody(deno, home, socket), "PermissionDenied");
    } finally {
      control.close();
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void));
    await run(["rm", "-rf", dir]).catch(() => {});
  }
});
