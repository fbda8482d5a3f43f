// `sim --real --kubelet`: a scenario on real nodes (cluster.ts). Objects are created one by one with kubectl, as an
// operator would; the scheduler places the pods and the controllers create the workloads' pods. Containers run the
// pause image: the scenario's images exist in no registry this machine can reach.
import { CommandFailed } from "../proc.ts";
import type { RealTarget, TargetOptions } from "../../../adapters/sim/real.ts";
import { type Json, type Refusal } from "../stack.ts";
import { pauseImage } from "./binaries.ts";
import { defaultServiceAccount, startNodeCluster } from "./cluster.ts";

const workloadKinds = new Set(["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]);
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The object with every container of its pod (template) on the local pause image. */
export function onPauseImage(obj: Json): Json {
  const podSpec = (spec: unknown): Json => {
    const s = isObject(spec) ? spec : {};
    const containers = Array.isArray(s.containers) ? s.containers : [];
    return {
      ...s,
      containers: containers.map((c) => ({ ...(isObject(c) ? c : {}), image: pauseImage, imagePullPolicy: "Never" })),
    };
  };
  if (obj.kind === "Pod") return { ...obj, spec: podSpec(obj.spec) };
  if (workloadKinds.has(String(obj.kind)) && isObject(obj.spec) && isObject(obj.spec.template)) {
    const template = obj.spec.template;
    return { ...obj, spec: { ...obj.spec, template: { ...template, spec: podSpec(template.spec) } } };
  }
  return obj;
}

export async function onRealNodes(o: TargetOptions): Promise<RealTarget> {
  const cluster = await startNodeCluster({ nodes: o.nodes, nodeBridges: o.bridges, log: o.log });
  const created: Array<{ kind: string; name: string; namespace: string; selector?: string; replicas: number }> = [];
  try {
    for (const [file, text] of Object.entries(o.cniConfigs)) await cluster.writeCniConfig(file, text);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  const meta = (obj: Json) => (isObject(obj.metadata) ? obj.metadata : {});
  const podsOf = async (c: (typeof created)[number]) => {
    const sel = c.kind === "Pod" ? `metadata.name=${c.name}` : undefined;
    const out = await cluster.kubectl([
      "get",
      "pods",
      "-n",
      c.namespace,
      "-o",
      "json",
      ...(sel ? ["--field-selector", sel] : ["-l", c.selector ?? ""]),
    ]);
    return (JSON.parse(out).items as Array<
      {
        metadata: { name: string; namespace: string; deletionTimestamp?: string };
        spec: { nodeName?: string };
        status: { phase?: string; conditions?: Array<{ type: string; status: string }> };
      }
    >).filter((p) => !p.metadata.deletionTimestamp);
  };
  return {
    nodeNames: cluster.nodes.map((n) => n.name),
    apply: async (objects) => {
      const refused: Refusal[] = [];
      for (const raw of objects) {
        const obj = onPauseImage(raw);
        const m = meta(obj), kind = String(obj.kind ?? "?"), name = String(m.name ?? "?");
        const namespace = String(m.namespace ?? "default");
        if (kind === "Pod" || workloadKinds.has(kind)) {
          // Pods need their ServiceAccount, which the controller-manager creates with the namespace.
          await defaultServiceAccount(cluster, namespace).catch(() => {});
        }
        try {
          await cluster.kubectl(["create", "-f", "-"], JSON.stringify(obj));
        } catch (e) {
          const message = e instanceof CommandFailed ? e.stderr.trim() : String(e);
          refused.push({ object: `${kind} ${m.namespace ? `${namespace}/` : ""}${name}`, status: 0, message });
          continue;
        }
        if (kind === "Pod") created.push({ kind, name, namespace, replicas: 1 });
        else if (workloadKinds.has(kind) && isObject(obj.spec)) {
          const labels = isObject(obj.spec.selector) && isObject(obj.spec.selector.matchLabels)
            ? obj.spec.selector.matchLabels
            : {};
          created.push({
            kind,
            name,
            namespace,
            selector: Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(","),
            replicas: typeof obj.spec.replicas === "number" ? obj.spec.replicas : 1,
          });
        } else created.push({ kind, name, namespace: m.namespace ? namespace : "", replicas: 0 });
      }
      return refused;
    },
    settle: async (timeoutMs) => {
      const want = created.filter((c) => c.kind !== "DaemonSet").reduce((n, c) => n + c.replicas, 0);
      const ready = (p: Awaited<ReturnType<typeof podsOf>>[number]) =>
        p.status.phase === "Running" &&
        (p.status.conditions ?? []).some((x) => x.type === "Ready" && x.status === "True");
      const deadline = Date.now() + timeoutMs;
      let pods: Awaited<ReturnType<typeof podsOf>> = [];
      while (true) {
        cluster.assertAlive();
        pods = (await Promise.all(created.filter((c) => c.kind === "Pod" || c.selector).map(podsOf))).flat();
        if ((pods.length >= want && pods.every(ready)) || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      return pods.map((p) => ({
        namespace: p.metadata.namespace,
        name: p.metadata.name,
        node: p.spec.nodeName ?? "",
        running: ready(p),
      })).sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
    },
    podLinks: (namespace, name) => cluster.podLinks(namespace, name),
    ping: (namespace, name, address) => cluster.podPing(namespace, name, address, 2),
    nodes: async () => {
      const info = new Map(
        (JSON.parse(await cluster.kubectl(["get", "nodes", "-o", "json"])).items as Array<
          {
            metadata: { name: string };
            status: { nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string } };
          }
        >).map((n) => [n.metadata.name, n.status.nodeInfo]),
      );
      return await Promise.all(cluster.nodes.map(async (n) => ({
        name: n.name,
        hostLinks: (JSON.parse(await cluster.nodeExec(n.name, ["ip", "-json", "link", "show"])) as Array<
          { ifname: string }
        >).map((l) => l.ifname).sort(),
        kubeletVersion: info.get(n.name)?.kubeletVersion ?? "",
        containerRuntimeVersion: info.get(n.name)?.containerRuntimeVersion ?? "",
      })));
    },
    kubeRun: (e) => cluster.kubeRun(e),
    teardown: async () => {
      for (const c of [...created].reverse()) {
        const ref = `${c.kind.toLowerCase()}/${c.name}`;
        const cascade = workloadKinds.has(c.kind) ? ["--cascade=foreground"] : [];
        await cluster.kubectl([
          "delete",
          ref,
          ...(c.namespace ? ["-n", c.namespace] : []),
          ...cascade,
          "--timeout=120s",
        ])
          .catch((e) => o.log(`deleting ${ref}: ${e instanceof Error ? e.message.split("\n")[0] : e}`));
      }
    },
    stop: () => cluster.stop(),
  };
}
