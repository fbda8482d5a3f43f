// The kubelet's PodResources gRPC API on a unix socket, served by the kubelet's own server code
// (tests/tools/k8s/podresources) from a JSON file of pods and their devices that a test can rewrite at any time.
import { ensureK8sBinaries } from "./apiserver.ts";

export interface PodDevicesFixture {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly containers: ReadonlyArray<{
    readonly name: string;
    readonly devices: ReadonlyArray<{ readonly resourceName: string; readonly deviceIds: ReadonlyArray<string> }>;
  }>;
}

export interface PodResourcesServer extends AsyncDisposable {
  readonly socket: string;
  /** Replaces the node's pods; the server reads them on every call. */
  setPods(pods: ReadonlyArray<PodDevicesFixture>): Promise<void>;
  stop(): Promise<void>;
}

export async function startPodResources(
  opts: {
    readonly featureGates?: string;
    /** The kubelet's rate limit (default: the kubelet's own, 100/s with a burst of 10). */
    readonly qps?: number;
    readonly burst?: number;
  } = {},
): Promise<PodResourcesServer> {
  const bin = `${await ensureK8sBinaries()}/podresources`;
  const dir = await Deno.makeTempDir({ prefix: "danm-podresources-" });
  const socket = `${dir}/kubelet.sock`, podsFile = `${dir}/pods.json`;
  const setPods = (pods: ReadonlyArray<PodDevicesFixture>) => Deno.writeTextFile(podsFile, JSON.stringify({ pods }));
  await setPods([]);
  const child = new Deno.Command(bin, {
    args: [
      "-socket",
      socket,
      "-pods",
      podsFile,
      ...(opts.featureGates ? ["-feature-gates", opts.featureGates] : []),
      ...(opts.qps ? ["-qps", String(opts.qps)] : []),
      ...(opts.burst ? ["-burst", String(opts.burst)] : []),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  const reading = (async () => {
    for (;;) {
      const { value, done } = await stderr.read();
      if (done) return;
      log += value;
    }
  })();
  for (let i = 0; !log.includes("serving PodResources"); i++) {
    if (i > 200) {
      child.kill("SIGKILL");
      throw new Error(`PodResources server did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await reading.catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return { socket, setPods, stop, [Symbol.asyncDispose]: stop };
}
