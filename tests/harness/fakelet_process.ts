// A node's fake kubelet as a process of its own (started by the danm stack, tests/harness/stack.ts, and the peers'
// nodes, tests/harness/peers/nodes.ts): it forwards the apiserver into the node's network namespace, runs the fake
// kubelet (fakelet.ts) and reports what it does on stdout, one JSON object a line.
//
//   deno run -A tests/harness/fakelet_process.ts fakelet --node N --kubeconfig F --bin-dir D --netconf F \
//     --api-port P --api-socket S [--max-parallel N] [--attempts N] [--persistent]
import { parseArgs } from "node:util";
import { Effect, Exit, Schema, Scope } from "effect";
import { makeLiveKube } from "../../adapters/kube/live.ts";
import { compareVersions } from "../../core/cni/netconf.ts";
import { type CniEvent, type CniOutcome, Fakelet, type FakeletOptions, type Sandbox } from "./fakelet.ts";
import type { PodSandbox } from "./stack.ts";
import { repoRoot, sleep } from "./proc.ts";

/** Copies bytes both ways until either side ends, then closes both. */
async function splice(a: Deno.Conn, b: Deno.Conn): Promise<void> {
  await Promise.race([
    a.readable.pipeTo(b.writable).catch(() => {}),
    b.readable.pipeTo(a.writable).catch(() => {}),
  ]);
  for (const c of [a, b]) {
    try {
      c.close();
    } catch { /* closed by pipeTo */ }
  }
}

/** Accepts on `listener` and splices each connection to a fresh `connect()`. Ends when the listener closes. */
export async function forward(listener: Deno.Listener, connect: () => Promise<Deno.Conn>): Promise<void> {
  try {
    for await (const conn of listener) {
      connect().then((up) => splice(conn, up), () => {
        try {
          conn.close();
        } catch { /* closed meanwhile */ }
      });
    }
  } catch { /* listener closed */ }
}

/** What a fake kubelet process reports on stdout, one JSON object a line. */
export const FakeletEvent = Schema.Union([
  Schema.Struct({ event: Schema.Literal("forwarding") }),
  Schema.Struct({ event: Schema.Literal("ready") }),
  Schema.Struct({
    event: Schema.Literal("sandbox"),
    pod: Schema.String,
    netns: Schema.String,
    containerId: Schema.String,
  }),
  Schema.Struct({ event: Schema.Literal("failed"), pod: Schema.String, message: Schema.String }),
  Schema.Struct({
    event: Schema.Literal("cni"),
    command: Schema.Literals(["ADD", "DEL"]),
    pod: Schema.String,
    containerId: Schema.String,
    phase: Schema.Literals(["start", "end"]),
    code: Schema.optionalKey(Schema.Number),
  }),
  Schema.Struct({
    event: Schema.Literal("removed"),
    pod: Schema.String,
    netns: Schema.String,
    codes: Schema.Array(Schema.Number),
    errors: Schema.Array(Schema.String),
  }),
]);
export type FakeletEvent = typeof FakeletEvent.Type;
export const decodeFakeletEvent = Schema.decodeUnknownSync(FakeletEvent);

/** What the danm stack (stack.ts) learns from its nodes' fake kubelets: the FakeletEvent lines on their stdout. */
export class FakeletReports {
  /** Pod (namespace/name) → its sandbox, kept (marked removed) once the pod is gone. */
  readonly sandboxes = new Map<string, PodSandbox & { removed: boolean }>();
  /** Pod → failed sandbox attempts since its last sandbox. */
  readonly sandboxFailures = new Map<string, { count: number; message: string }>();
  /** CNI DELs that failed, one line each. */
  readonly delFailures: string[] = [];
  /** Nodes whose CNI is ready. */
  readonly ready = new Set<string>();
  /** Nodes whose fake kubelet forwards the apiserver into the node's namespace. */
  readonly forwarding = new Set<string>();

  constructor(private readonly onCni?: (node: string, e: CniEvent) => void) {}

  /** The stdout line handler for node `node`'s fake kubelet. */
  lineHandler(node: string): (line: string) => void {
    return (line) => this.record(node, line);
  }

  private record(node: string, line: string): void {
    let e: FakeletEvent;
    try {
      e = decodeFakeletEvent(JSON.parse(line));
    } catch {
      return; // an ordinary log line
    }
    switch (e.event) {
      case "forwarding":
        this.forwarding.add(node);
        break;
      case "ready":
        this.ready.add(node);
        break;
      case "sandbox": {
        const [namespace, name] = e.pod.split("/");
        this.sandboxes.set(e.pod, {
          namespace,
          name,
          node,
          netns: e.netns,
          containerId: e.containerId,
          removed: false,
        });
        this.sandboxFailures.delete(e.pod);
        break;
      }
      case "cni":
        this.onCni?.(node, e);
        break;
      case "failed":
        this.sandboxFailures.set(e.pod, {
          count: (this.sandboxFailures.get(e.pod)?.count ?? 0) + 1,
          message: e.message,
        });
        break;
      case "removed": {
        const sb = this.sandboxes.get(e.pod);
        if (sb && sb.netns === e.netns) this.sandboxes.set(e.pod, { ...sb, removed: true });
        if (e.codes.some((c) => c !== 0)) this.delFailures.push(`${e.pod}: ${e.errors.join("; ")}`);
        break;
      }
    }
  }
}

/** Reports sandboxes on stdout, one JSON object a line, so the harness knows each pod's namespace. */
class ReportingFakelet extends Fakelet {
  constructor(options: FakeletOptions, private readonly emit: (e: FakeletEvent) => void) {
    super(options);
  }

  override async runPod(namespace: string, name: string): Promise<Sandbox & { addMs: number }> {
    try {
      const sb = await super.runPod(namespace, name);
      this.emit({ event: "sandbox", pod: `${namespace}/${name}`, netns: sb.netnsName, containerId: sb.containerId });
      return sb;
    } catch (e) {
      this.emit({ event: "failed", pod: `${namespace}/${name}`, message: e instanceof Error ? e.message : String(e) });
      throw e;
    }
  }

  override async stopPod(namespace: string, name: string): Promise<CniOutcome[]> {
    const sb = this.sandboxes.get(`${namespace}/${name}`);
    const outs = await super.stopPod(namespace, name);
    if (sb) {
      this.emit({
        event: "removed",
        pod: `${namespace}/${name}`,
        netns: sb.netnsName,
        codes: outs.map((o) => o.code),
        errors: outs.filter((o) => o.code !== 0).map((o) => (o.stdout || o.stderr).trim()),
      });
    }
    return outs;
  }
}

const FakeletFlags = Schema.Struct({
  node: Schema.String,
  kubeconfig: Schema.String,
  "bin-dir": Schema.String,
  netconf: Schema.String,
  "api-port": Schema.NumberFromString,
  "api-socket": Schema.String,
  "max-parallel": Schema.optionalKey(Schema.NumberFromString),
  attempts: Schema.optionalKey(Schema.NumberFromString),
});
const fakeletFlagNames = [
  "node",
  "kubeconfig",
  "bin-dir",
  "netconf",
  "api-port",
  "api-socket",
  "max-parallel",
  "attempts",
] as const;

/** How a fake kubelet sets sandboxes up (tests/harness/fakelet.ts); the defaults are Fakelet's. */
export interface FakeletTuning {
  readonly maxParallelSandboxes?: number;
  readonly sandboxAttempts?: number;
  /** Retry failed sandboxes (while the pod exists), DELs and status writes as kubelet does (fakelet.ts). */
  readonly persistent?: boolean;
}

/** The `fakelet_process.ts fakelet …` command line of a node's fake kubelet. */
export function fakeletArgv(o: {
  readonly netnsPath: string;
  readonly node: string;
  readonly kubeconfig: string;
  readonly binDir: string;
  readonly netconfFile: string;
  readonly apiPort: number;
  readonly apiSocket: string;
  readonly tuning?: FakeletTuning;
}): string[] {
  return [
    // Only the network namespace: the pod namespaces it creates are bind mounts, which must land in the harness's
    // mount namespace to be seen by everyone. (`ip netns exec` gives a process a mount namespace of its own that
    // receives the harness's mounts but shares none back: the agent would see empty files.)
    "nsenter",
    `--net=${o.netnsPath}`,
    "--",
    Deno.execPath(),
    "run",
    "-A",
    `${repoRoot}/tests/harness/fakelet_process.ts`,
    "fakelet",
    "--node",
    o.node,
    "--kubeconfig",
    o.kubeconfig,
    "--bin-dir",
    o.binDir,
    "--netconf",
    o.netconfFile,
    "--api-port",
    String(o.apiPort),
    "--api-socket",
    o.apiSocket,
    ...(o.tuning?.maxParallelSandboxes ? ["--max-parallel", String(o.tuning.maxParallelSandboxes)] : []),
    ...(o.tuning?.sandboxAttempts ? ["--attempts", String(o.tuning.sandboxAttempts)] : []),
    ...(o.tuning?.persistent ? ["--persistent"] : []),
  ];
}

/** `fakelet_process.ts fakelet …`: the apiserver forward for the node's namespace, then the fake kubelet until SIGTERM. */
async function fakeletMain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...Object.fromEntries(fakeletFlagNames.map((k) => [k, { type: "string" as const }])),
      persistent: { type: "boolean" as const },
    },
    strict: true,
  });
  const { persistent, ...stringFlags } = values;
  const flags = Schema.decodeUnknownSync(FakeletFlags)(stringFlags);
  const emit = (e: FakeletEvent) => console.log(JSON.stringify(e));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: flags["api-port"] });
  const forwarding = forward(listener, () => Deno.connect({ transport: "unix", path: flags["api-socket"] }));
  emit({ event: "forwarding" }); // the node's processes can reach the apiserver from now on

  const scope = Scope.makeUnsafe();
  const kube = await Effect.runPromise(
    makeLiveKube({ config: { _tag: "Kubeconfig", path: flags.kubeconfig }, userAgent: `fakelet/${flags.node}` })
      .pipe(Scope.provide(scope)),
  );
  const netconf = JSON.parse(await Deno.readTextFile(flags.netconf)) as Record<string, unknown>;
  const fakelet = new ReportingFakelet({
    nodeName: flags.node,
    kube,
    binDir: flags["bin-dir"],
    netconf,
    ...(Deno.env.get("PATH") ? { path: Deno.env.get("PATH")! } : {}),
    ...(flags["max-parallel"] ? { maxParallelSandboxes: flags["max-parallel"] } : {}),
    ...(flags.attempts ? { sandboxAttempts: flags.attempts } : {}),
    persistent: persistent === true,
    onCni: (e) => emit({ event: "cni", ...e }),
  }, emit);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      // Sandboxes still here get their DEL while the agent (and this forward) still run.
      await fakelet.dispose();
      await Effect.runPromise(Scope.close(scope, Exit.void));
      listener.close();
      await forwarding;
    })();
  const done = new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => void stop().then(resolve));
  });

  // As a runtime gates node readiness on STATUS (CNI 1.1.0): the daemon has synced and reaches the apiserver.
  // Older configurations cannot ask; the daemon's socket appearing is all there is to wait for (a plugin without
  // a daemon, e.g. a peer's, is ready at once).
  const deadline = Date.now() + 120_000;
  const hasStatus = compareVersions(fakelet.cniVersion, "1.1.0") >= 0;
  while (!stopping) {
    const ok = hasStatus ? (await fakelet.status()).every((o) => o.code === 0) : netconf.daemonSocket === undefined ||
      await Deno.stat(String(netconf.daemonSocket)).then(() => true, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      console.error(`fakelet ${flags.node}: the danm CNI did not become ready within 120 s`);
      await stop();
      return 1;
    }
    await sleep(250);
  }
  if (!stopping) {
    fakelet.start();
    emit({ event: "ready" });
  }
  await done;
  return 0;
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode !== "fakelet") {
    console.error(
      "usage: fakelet_process.ts fakelet --node N --kubeconfig F --bin-dir D --netconf F --api-port P --api-socket S",
    );
    Deno.exit(2);
  }
  Deno.exit(await fakeletMain(rest));
}
