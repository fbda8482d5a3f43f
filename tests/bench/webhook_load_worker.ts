// The load generator of tests/bench/webhook_bench.ts, in a Worker so that the client's work does not share the
// event loop with the webhook it measures. Receives {kubeconfig text, phase}, answers with per-request latencies.
import * as k8s from "@kubernetes/client-node";
import { restClient } from "../integration/api/rest.ts";

interface Job {
  readonly kubeconfig: string;
  readonly collection: string;
  readonly kind: "DanmNet" | "TenantNetwork";
  readonly prefix: string;
  readonly count: number;
  readonly concurrency: number;
  readonly dryRun?: boolean;
}

const self = globalThis as unknown as Worker & { onmessage: (e: MessageEvent<Job>) => void };

self.onmessage = async (e: MessageEvent<Job>) => {
  const job = e.data;
  const kc = new k8s.KubeConfig();
  kc.loadFromString(job.kubeconfig);
  const rest = restClient(kc);
  const latencies: number[] = [];
  let next = 0, failures = 0, lastError = "";
  const body = (i: number) =>
    job.kind === "DanmNet"
      ? {
        apiVersion: "danm.io/v1",
        kind: "DanmNet",
        metadata: { name: `${job.prefix}-${i}`, namespace: "default" },
        spec: {
          NetworkID: "bench",
          Options: { cidr: `10.${i % 250}.${i % 200}.0/24`, host_device: "ens4", vlan: 1 + (i % 4000) },
        },
      }
      : {
        apiVersion: "danm.io/v1",
        kind: "TenantNetwork",
        metadata: { name: `${job.prefix}-${i}`, namespace: "default" },
        spec: { NetworkID: "tn", Options: { cidr: "10.200.0.0/24" } },
      };
  const worker = async () => {
    while (next < job.count) {
      const i = next++;
      const t0 = performance.now();
      const r = await rest.call("POST", `${job.collection}${job.dryRun ? "?dryRun=All" : ""}`, body(i));
      latencies.push(performance.now() - t0);
      if (r.status !== 201) {
        failures++;
        lastError = JSON.stringify(r.body).slice(0, 300);
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  rest.close();
  self.postMessage({ latencies, failures, seconds, lastError });
};
