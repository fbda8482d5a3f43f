// The thin CNI client behind the `danm` and `fakeipam` binaries. The runtime execs it per pod, so it does
// as little as possible: no Effect, no Kubernetes client (together ~650 ms of imports). It forwards the
// environment and stdin to the node daemon over a unix socket and relays the answer; the daemon decodes and
// validates everything. Only VERSION is answered locally, so a runtime can probe danm before the daemon runs.
import { defaultDaemonSocket, latestVersion, supportedVersions } from "../../core/cni/versions.ts";

export type Program = "danm" | "fakeipam";

function cniErrorJson(code: number, msg: string, details?: string): string {
  return JSON.stringify({ cniVersion: latestVersion, code, msg, ...(details ? { details } : {}) });
}

/**
 * Everything `r` yields until its end. A plain read loop: going through `new Response(stream)` costs ~4 ms of
 * web-streams setup per process, a tenth of this program's whole run.
 */
async function readAll(r: { read(p: Uint8Array): Promise<number | null> }): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const buf = new Uint8Array(64 * 1024);
    const n = await r.read(buf);
    if (n === null) break;
    chunks.push(buf.subarray(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export async function runThinClient(program: Program): Promise<number> {
  const encoder = new TextEncoder();
  const stdin = new TextDecoder().decode(await readAll(Deno.stdin));
  const env = Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([k]) => k.startsWith("CNI_")));
  // Only two routing fields are read here; the daemon decodes and validates the whole configuration.
  let routing: { cniVersion?: unknown; daemonSocket?: unknown } = {};
  try {
    const parsed: unknown = JSON.parse(stdin || "{}");
    if (typeof parsed === "object" && parsed !== null) routing = parsed;
  } catch {
    // Malformed input: the daemon reports it properly.
  }
  if (env.CNI_COMMAND === "VERSION") {
    const requested = routing.cniVersion;
    const version = (supportedVersions as ReadonlyArray<unknown>).includes(requested) ? requested : latestVersion;
    await Deno.stdout.write(encoder.encode(JSON.stringify({ cniVersion: version, supportedVersions })));
    return 0;
  }
  // DANM_SOCKET (set by danm for its delegates, so fakeipam finds the daemon) wins over 00-danm.conf's
  // daemonSocket, which wins over the default.
  const socket = Deno.env.get("DANM_SOCKET") ||
    (typeof routing.daemonSocket === "string" && routing.daemonSocket) || defaultDaemonSocket;
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
  } catch (e) {
    // STATUS must say "plugin not available" (50) so the runtime marks the node's network not ready; other
    // verbs are worth retrying (11) once the daemon is back.
    await Deno.stdout.write(encoder.encode(cniErrorJson(
      env.CNI_COMMAND === "STATUS" ? 50 : 11,
      `danm node daemon is not reachable at ${socket}`,
      `${e instanceof Error ? e.message : String(e)}; is the netwatcher DaemonSet running on this node?`,
    )));
    return 1;
  }
  try {
    await conn.write(encoder.encode(JSON.stringify({ program, env, stdin }) + "\n"));
    await conn.closeWrite();
    const answer = new TextDecoder().decode(await readAll(conn));
    let parsed: { code?: unknown; stdout?: unknown; stderr?: unknown };
    try {
      parsed = JSON.parse(answer);
    } catch {
      await Deno.stdout.write(
        encoder.encode(cniErrorJson(5, "malformed answer from the danm node daemon", answer.slice(0, 200))),
      );
      return 1;
    }
    if (typeof parsed.stdout === "string") await Deno.stdout.write(encoder.encode(parsed.stdout));
    if (typeof parsed.stderr === "string" && parsed.stderr) await Deno.stderr.write(encoder.encode(parsed.stderr));
    return typeof parsed.code === "number" ? parsed.code : 1;
  } catch (e) {
    await Deno.stdout.write(encoder.encode(cniErrorJson(5, "lost the connection to the danm node daemon", String(e))));
    return 1;
  }
}
