// The thin CNI client behind the `danm` and `fakeipam` binaries. The runtime execs it per pod, so it does
// as little as possible: no Effect, no Kubernetes client (together ~650 ms of imports). It forwards the
// environment and stdin to the node daemon over a unix socket and relays the answer; the daemon decodes and
// validates everything. Only VERSION is answered locally, so a runtime can probe danm before the daemon runs.
import { defaultDaemonSocket, latestVersion, supportedVersions } from "../../core/cni/versions.ts";

export type Program = "danm" | "fakeipam";

function cniErrorJson(code: number, msg: string, details?: string): string {
  return JSON.stringify({ cniVersion: latestVersion, code, msg, ...(details ? { details } : {}) });
}

async function readAll(r: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(r).arrayBuffer());
}

export async function runThinClient(program: Program): Promise<number> {
  const encoder = new TextEncoder();
  const stdin = new TextDecoder().decode(await readAll(Deno.stdin.readable));
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
    const answer = new TextDecoder().decode(await readAll(conn.readable));
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
