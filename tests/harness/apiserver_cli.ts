// `deno task harness:apiserver`: a throw-away etcd + kube-apiserver on loopback for manual work.
import { startApiServer } from "./apiserver.ts";

const api = await startApiServer();
console.log(`kube-apiserver ready at ${api.url}`);
console.log(`kubeconfig: ${api.kubeconfigPath}`);
console.log("Ctrl-C stops it and removes its data.");
const stop = async () => {
  await api.stop();
  await Deno.remove(api.dir, { recursive: true }).catch(() => {});
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
