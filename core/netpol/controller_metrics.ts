// The policy controller's metrics (core/observability/metrics.ts), one registry per node agent like netwatcher's.
import { Registry } from "../observability/metrics.ts";

export function netpolMetrics(node: string) {
  const r = new Registry({ node });
  const m = {
    registry: r,
    applies: r.counter(
      "danm_netpol_table_changes_total",
      "Changes of pods' danm_netpol tables, by result (applied: replaced whole, patched: set elements only, " +
        "patch_failed: a patch refused and the table replaced instead, removed, error).",
    ),
    convergeSeconds: r.histogram(
      "danm_netpol_converge_seconds",
      "From the agent receiving a change (policy, pod, namespace, DanmEp) to a pod's table reprogrammed for it.",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
    policedPods: r.gauge("danm_netpol_policed_pods", "Pods of this node with a danm_netpol table programmed."),
    failingPods: r.gauge("danm_netpol_failing_pods", "Pods of this node whose table could not be programmed."),
  };
  for (const result of ["applied", "patched", "patch_failed", "removed", "error"]) m.applies.init({ result });
  m.policedPods.set(0);
  m.failingPods.set(0);
  return m;
}
export type NetpolMetrics = ReturnType<typeof netpolMetrics>;
