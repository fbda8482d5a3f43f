// `deno task harness:node [--nodes N] [--no-danm]`: starts the real-node cluster (tests/harness/node/cluster.ts) in a
// private network and mount namespace, prints how to reach it, and keeps it until Ctrl-C (or SIGTERM). For looking
// around while developing: `nsenter --net=/proc/<pid>/ns/net --mount=/proc/<pid>/ns/mnt` with the printed PID
// enters the harness's namespaces, where the printed kubeconfig and crictl commands work.
import { isolated } from "../isolate.ts";
import { repoRoot } from "../proc.ts";
import { prepareNodeBinaries } from "./binaries.ts";
import { startNodeCluster } from "./cluster.ts";

const marker = "DANM_NODE_CLI_ISOLATED";
const args = [...Deno.args];
const nodesAt = args.indexOf("--nodes");
const nodes = nodesAt >= 0 ? Number(args[nodesAt + 1]) : 2;
const log = (l: string) => console.error(`[node-cluster] ${l}`);

if (!Deno.env.get(marker)) await prepareNodeBinaries(log);
const outside = await isolated(marker, `${repoRoot}/tests/harness/node/cli.ts`, Deno.args, Deno.env.toObject());
if (outside !== undefined) Deno.exit(outside);

const cluster = await startNodeCluster({ nodes, deployDanm: !args.includes("--no-danm"), log });
console.log(`cluster ${cluster.run} up (harness PID ${Deno.pid}); kubeconfig ${cluster.kubeconfigPath}`);
console.log(`kubectl: ${cluster.binaries.dir}/kubectl --kubeconfig ${cluster.kubeconfigPath} get pods -A -o wide`);
for (const n of cluster.nodes) {
  console.log(`${n.name}: ${n.underlayIp}, crictl --runtime-endpoint unix://${n.containerdSocket}, dir ${n.dir}`);
}
await new Promise<void>((resolve) => {
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
});
await cluster.stop();
