// The Kube contract against the in-memory twin.
import { layerMemoryKube } from "../../../adapters/kube/memory.ts";
import { kubeContract } from "../../contract/kube.ts";

kubeContract(
  "memory kube",
  () => Promise.resolve({ layer: layerMemoryKube(), namespace: "default", release: () => Promise.resolve() }),
);
