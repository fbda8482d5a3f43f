// danm's node agents on a real-node cluster as kubelet reports them: restarts, and how each restarted container last
// ended (OOMKilled, a failed liveness probe's exit …) — what a restart count alone does not say.
import type { NodeCluster } from "./cluster.ts";

export interface AgentStatus {
  readonly restarts: number;
  /** Why each restarted container last ended (kubelet's lastState): OOMKilled, Error with its exit code, … */
  readonly lastEnds: ReadonlyArray<string>;
  /** The pods and containers that restarted. */
  readonly restarted: ReadonlyArray<{ pod: string; container: string }>;
}

export const agentStatus = async (c: NodeCluster): Promise<AgentStatus> => {
  const statuses = (JSON.parse(
    await c.kubectl(["get", "pods", "-n", "kube-system", "-l", "app.kubernetes.io/name=danm-netwatcher", "-o", "json"]),
  ).items as Array<{
    metadata: { name: string };
    spec: { nodeName?: string };
    status: {
      containerStatuses?: Array<{
        name: string;
        restartCount: number;
        lastState?: { terminated?: { reason?: string; exitCode?: number; finishedAt?: string } };
      }>;
    };
  }>).flatMap((p) =>
    (p.status.containerStatuses ?? []).map((s) => ({ pod: p.metadata.name, node: p.spec.nodeName ?? "?", ...s }))
  );
  return {
    restarts: statuses.reduce((n, s) => n + s.restartCount, 0),
    restarted: statuses.filter((s) => s.restartCount > 0).map((s) => ({ pod: s.pod, container: s.name })),
    lastEnds: statuses.filter((s) => s.lastState?.terminated).map((s) => {
      const t = s.lastState!.terminated!;
      return `${s.node}/${s.name}: ${t.reason ?? "?"} (exit ${t.exitCode ?? "?"}) at ${t.finishedAt ?? "?"}`;
    }),
  };
};

/** Logs what each restarted agent container said before it ended: the reason a restart count alone does not give. */
export async function logRestarted(c: NodeCluster, status: AgentStatus, log: (line: string) => void): Promise<void> {
  for (const r of status.restarted) {
    const previous = await c.kubectl(["logs", "-n", "kube-system", r.pod, "-c", r.container, "--previous", "--tail=15"])
      .catch((e) => `(no previous log: ${e instanceof Error ? e.message : e})`);
    log(`${r.pod}/${r.container} before its last restart:\n${previous.trimEnd()}`);
  }
}
