// The Kube contract against a real kube-apiserver (the live layer: client-node config + fetch).
import { Effect } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { kubeContract } from "../../contract/kube.ts";
import { useCluster } from "../../harness/cluster.ts";
import { ensureCrd, nadCrd } from "./crds.ts";

kubeContract("live kube", async () => {
  const cluster = await useCluster();
  const layer = layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } });
  try {
    await Effect.runPromise(
      ensureCrd(nadCrd).pipe(Effect.provide(layer)),
    );
  } catch (e) {
    await cluster.release();
    throw e;
  }
  return { layer, namespace: "default", release: cluster.release };
});
