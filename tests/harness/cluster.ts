// Gives a test file a running apiserver: the runner's shared instance when there is one, else a private one.
import * as k8s from "@kubernetes/client-node";
import { sharedFromEnv, startApiServer } from "./apiserver.ts";
import { createPki, type Pki } from "./pki.ts";

export interface TestCluster {
  readonly url: string;
  readonly kubeconfigPath: string;
  readonly pki: Pki;
  readonly kubeConfig: k8s.KubeConfig;
  /** Stops the apiserver if this test file started it; a no-op for the runner's shared instance. */
  release(): Promise<void>;
}

export async function useCluster(): Promise<TestCluster> {
  const shared = sharedFromEnv();
  const kubeConfig = new k8s.KubeConfig();
  if (shared) {
    kubeConfig.loadFromFile(shared.kubeconfigPath);
    return {
      url: shared.url,
      kubeconfigPath: shared.kubeconfigPath,
      pki: await createPki(shared.pkiDir),
      kubeConfig,
      release: () => Promise.resolve(),
    };
  }
  const api = await startApiServer();
  kubeConfig.loadFromFile(api.kubeconfigPath);
  return { url: api.url, kubeconfigPath: api.kubeconfigPath, pki: api.pki, kubeConfig, release: api.stop };
}

/** A short random suffix for object names, so tests sharing one apiserver never collide. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}
