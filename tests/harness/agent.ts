// The real node agent process (cmd/netwatcher.ts: netwatcher + the danm CNI daemon) for one node, started in the
// caller's network namespace with a socket and sandbox records of its own; for the tests and benchmarks that need the
// process itself (overload bounds, SIGTERM drain, RSS), not the layer in-process.
import { components } from "../../k8s/images/build.ts";
import { repoRoot } from "./proc.ts";

/** The V8 flags the node agent runs with in its image and DaemonSet (its memory bound relies on them). */
const v8Flags = components.find((c) => c.name === "danm-node")!.entrypoint.filter((a) => a.startsWith("--v8-flags="));

export interface NodeAgentOptions {
  readonly kubeconfig: string;
  readonly nodeName: string;
  /** A directory of its own: the socket and the sandbox records go there. */
  readonly dir: string;
  /** Extra flags (e.g. --cni-max-concurrent 1). */
  readonly args?: ReadonlyArray<string>;
  /** Where the agent's log goes (default: discarded). */
  readonly logFile?: string;
}

export interface NodeAgent {
  readonly pid: number;
  readonly socket: string;
  /** The exit status, once it has exited. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Sends a signal (SIGTERM: the DaemonSet's stop). */
  readonly kill: (signal?: Deno.Signal) => void;
  /** Resident and peak resident memory, in MiB (/proc/<pid>/status VmRSS, VmHWM). */
  readonly memory: () => { readonly rssMb: number; readonly peakMb: number };
  /** SIGKILLs it if still running and waits for it. */
  readonly dispose: () => Promise<void>;
}

export async function startNodeAgent(o: NodeAgentOptions): Promise<NodeAgent> {
  const socket = `${o.dir}/danm.sock`;
  await Deno.mkdir(`${o.dir}/sandboxes`, { recursive: true });
  const log = o.logFile ? await Deno.open(o.logFile, { write: true, create: true, append: true }) : undefined;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...v8Flags,
      `${repoRoot}/cmd/netwatcher.ts`,
      "--kubeconfig",
      o.kubeconfig,
      "--node-name",
      o.nodeName,
      "--cni-socket",
      socket,
      "--cni-state-dir",
      `${o.dir}/sandboxes`,
      "--metrics-port",
      "0",
      "--reclaim-period",
      "0s",
      // Host interfaces are not this agent's business here: it watches no network for them.
      "--network-selector",
      `danm.io/test-agent=${o.nodeName}`,
      ...(o.args ?? []),
    ],
    stdin: "null",
    stdout: log ? "piped" : "null",
    stderr: log ? "piped" : "null",
  }).spawn();
  const copies = log
    ? [child.stdout, child.stderr].map(async (stream) => {
      for await (const chunk of stream) log.writeSync(chunk);
    })
    : [];
  const exited = child.status.then(async (status) => {
    await Promise.allSettled(copies);
    log?.close();
    return status;
  });
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return {
    pid: child.pid,
    socket,
    exited,
    kill: (signal = "SIGTERM") => {
      try {
        child.kill(signal);
      } catch { /* gone */ }
    },
    memory: () => {
      const status = Deno.readTextFileSync(`/proc/${child.pid}/status`);
      return { rssMb: field(status, "VmRSS") / 1024, peakMb: field(status, "VmHWM") / 1024 };
    },
    dispose: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await exited;
    },
  };
}
