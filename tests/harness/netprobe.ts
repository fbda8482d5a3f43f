// Real TCP and UDP traffic between network namespaces, for the policy tests: a server that answers on every port
// it is given (TCP: accepts and writes "ok"; UDP: echoes), and a prober that tries many targets at once and reports
// which answered. Run inside a netns (`ip netns exec NS deno run …`); both are plain Deno, no shell.
//
//   netprobe.ts serve PORT…                   listens on [::] (TCP and UDP, IPv4 too) until killed; prints "ready"
//   netprobe.ts probe TIMEOUT_MS TARGET…      TARGET = tcp|udp:ADDRESS:PORT (IPv6 unbracketed, port last);
//                                             prints one JSON object {target: true|false}
import { run } from "./proc.ts";

type Target = { proto: "tcp" | "udp"; address: string; port: number };

const parseTarget = (t: string): Target => {
  const m = /^(tcp|udp):(.+):(\d+)$/.exec(t);
  if (!m) throw new Error(`bad target ${t}`);
  return { proto: m[1] as "tcp" | "udp", address: m[2], port: Number(m[3]) };
};

async function serveTcp(listener: Deno.TcpListener) {
  for await (const conn of listener) {
    conn.write(new TextEncoder().encode("ok")).catch(() => {}).finally(() => conn.close());
  }
}

async function serveUdp(socket: Deno.DatagramConn) {
  for (;;) {
    const [data, from] = await socket.receive();
    await socket.send(data, from).catch(() => {});
  }
}

async function serve(ports: number[]) {
  const tasks: Promise<void>[] = [];
  for (const port of ports) {
    // [::] is dual-stack (bindv6only is 0 in a fresh netns): IPv4 arrives as mapped addresses.
    tasks.push(serveTcp(Deno.listen({ hostname: "::", port, transport: "tcp" })));
    tasks.push(serveUdp(Deno.listenDatagram({ hostname: "::", port, transport: "udp" })));
  }
  console.log("ready");
  await Promise.all(tasks);
}

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T | undefined> =>
  Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))]);

async function probeOne(t: Target, timeoutMs: number): Promise<boolean> {
  if (t.proto === "tcp") {
    const conn = await withTimeout(
      Deno.connect({ hostname: t.address, port: t.port }).catch(() => undefined),
      timeoutMs,
    );
    if (!conn) return false;
    const buf = new Uint8Array(2);
    const n = await withTimeout(conn.read(buf).catch(() => null), timeoutMs);
    conn.close();
    return n === 2;
  }
  const socket = Deno.listenDatagram({
    hostname: t.address.includes(":") ? "::" : "0.0.0.0",
    port: 0,
    transport: "udp",
  });
  try {
    // Several tries: a first datagram may wait for neighbour resolution.
    for (let i = 0; i < 3; i++) {
      // A local output-hook drop (egress policy) fails the send itself with EPERM: that datagram is blocked.
      const sent = await socket.send(new TextEncoder().encode("hi"), {
        transport: "udp",
        hostname: t.address,
        port: t.port,
      })
        .then(() => true, (e) => (e instanceof Deno.errors.PermissionDenied ? false : Promise.reject(e)));
      if (!sent) return false;
      const got = await withTimeout(socket.receive(), timeoutMs / 3);
      if (got) return true;
    }
    return false;
  } finally {
    socket.close();
  }
}

async function probe(timeoutMs: number, targets: string[]) {
  const results = await Promise.all(targets.map((t) => probeOne(parseTarget(t), timeoutMs)));
  console.log(JSON.stringify(Object.fromEntries(targets.map((t, i) => [t, results[i]]))));
  Deno.exit(0); // pending timers of lost races must not keep the process alive
}

if (import.meta.main) {
  const [cmd, ...args] = Deno.args;
  if (cmd === "serve") await serve(args.map(Number));
  else if (cmd === "probe") await probe(Number(args[0]), args.slice(1));
  else throw new Error("usage: netprobe.ts serve PORT… | probe TIMEOUT_MS TARGET…");
}

const script = new URL(import.meta.url).pathname;
// Deno.listenDatagram (UDP) is behind --unstable-net.
const denoArgs = ["run", "--no-config", "--no-lock", "--unstable-net", "--allow-net", script];

/** A netprobe server inside `netns` (a name under /run/netns), answering on `ports`; dispose stops it. */
export async function netprobeServer(netns: string, ports: number[]): Promise<AsyncDisposable> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, Deno.execPath(), ...denoArgs, "serve", ...ports.map(String)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  if (!first.value?.includes("ready")) throw new Error(`netprobe server in ${netns} did not start`);
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return {
    async [Symbol.asyncDispose]() {
      child.kill("SIGKILL");
      await child.status;
    },
  };
}

/** Tries every target from inside `netns`; returns which answered (target string → true). */
export async function probeFrom(netns: string, targets: string[], timeoutMs = 1500): Promise<Record<string, boolean>> {
  const out = await run([
    "ip",
    "netns",
    "exec",
    netns,
    Deno.execPath(),
    ...denoArgs,
    "probe",
    String(timeoutMs),
    ...targets,
  ]);
  return JSON.parse(out.trim().split("\n").at(-1)!) as Record<string, boolean>;
}
