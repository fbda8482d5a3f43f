// The fault injector of the chaos run: what can go wrong on real nodes, done at random (seeded) while pods churn.
//
// Process faults act on the stack's real processes; pod faults are asked of the fake kubelet through annotations
// on the next pod created (fakelet.ts FaultAnnotations). Every fault is logged with what it hit.
import { FaultAnnotations } from "../harness/fakelet.ts";
import type { Stack } from "../harness/stack.ts";
import type { ApiServer } from "../harness/apiserver.ts";
import { sleep } from "../harness/proc.ts";
import type { Rng } from "./rng.ts";

export const FaultKinds = [
  "kill9_agent_mid_add",
  "kill9_agent_mid_del",
  "sigterm_agent_in_flight",
  "apiserver_restart",
  "etcd_restart",
  "kubelet_drops_del",
  "netns_gone_before_del",
  "repeated_add",
  "webhook_down",
  "node_removed",
] as const;
export type FaultKind = typeof FaultKinds[number];

/** One fault of a run's schedule: what is done once the run has completed `cycle` cycles. */
export interface ScheduledFault {
  readonly cycle: number;
  readonly kind: FaultKind;
}

/**
 * The faults of a run, a function of its seed alone: every fault kind once in a shuffled order, again and again (so a
 * run of N faults has every kind ⌊N/10⌋ or ⌈N/10⌉ times), the first within `cyclesPerFault` cycles, each next one
 * ½–1½ × `cyclesPerFault` cycles after the one before. The cycles are counted from the schedule, not from when the
 * previous fault ended, so how long a fault takes on a loaded machine does not move the ones after it.
 */
export function faultSchedule(rng: Rng, cyclesPerFault: number, cycles: number): ScheduledFault[] {
  const out: ScheduledFault[] = [];
  let bag: FaultKind[] = [];
  for (let at = rng.int(1, cyclesPerFault); at < cycles;) {
    if (bag.length === 0) bag = rng.shuffle(FaultKinds);
    out.push({ cycle: at, kind: bag.shift()! });
    at += rng.int(Math.ceil(cyclesPerFault / 2), Math.ceil(cyclesPerFault * 1.5));
  }
  return out;
}

/** Pod faults: an annotation on the next pod created. */
export const podFaultAnnotation: Partial<Record<FaultKind, string>> = {
  kubelet_drops_del: FaultAnnotations.dropDel,
  netns_gone_before_del: FaultAnnotations.netnsGoneBeforeDel,
  repeated_add: FaultAnnotations.repeatAdd,
};

/** CNI calls in flight, per node, from the fake kubelets' reports. */
export class InFlight {
  private readonly calls = new Map<string, Map<string, "ADD" | "DEL">>();

  update(node: string, e: { command: "ADD" | "DEL"; containerId: string; phase: "start" | "end" }): void {
    const m = this.calls.get(node) ?? new Map<string, "ADD" | "DEL">();
    this.calls.set(node, m);
    const key = `${e.command}/${e.containerId}`;
    if (e.phase === "start") m.set(key, e.command);
    else m.delete(key);
  }

  /** Nodes with a `command` in flight (any command when undefined). */
  nodes(command?: "ADD" | "DEL"): string[] {
    return [...this.calls].filter(([, m]) => [...m.values()].some((c) => !command || c === command)).map(([n]) => n);
  }

  forget(node: string): void {
    this.calls.delete(node);
  }
}

export interface FaultContext {
  readonly stack: Stack;
  readonly api: ApiServer;
  readonly rng: Rng;
  readonly inFlight: InFlight;
  readonly log: (line: string) => void;
  /** Arms a pod fault: the next pod created carries `annotation`. */
  readonly armPodFault: (kind: FaultKind, annotation: string) => void;
  /** A name for a replacement node. */
  readonly nextNodeName: () => string;
}

/** Waits until some node has `command` in flight; the node, or undefined after `timeoutMs`. */
async function awaitInFlight(ctx: FaultContext, command: "ADD" | "DEL" | undefined, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const nodes = ctx.inFlight.nodes(command).filter((n) => ctx.stack.nodes.some((x) => x.name === n));
    if (nodes.length > 0) return ctx.rng.pick(nodes.sort());
    await sleep(2);
  }
  return undefined;
}

/**
 * Kills (or SIGTERMs) a node agent while a CNI `command` is in flight on its node, then restarts it after a delay as
 * its DaemonSet would. A call that ended before the signal landed is not counted: the next one is tried. False if
 * no such call came within the time allowed.
 */
async function hitAgent(ctx: FaultContext, command: "ADD" | "DEL" | undefined, sig: "SIGKILL" | "SIGTERM") {
  for (let attempt = 0; attempt < 20; attempt++) {
    const node = await awaitInFlight(ctx, command);
    if (!node) return false;
    // Somewhere inside the call: the thin client starting, the daemon planning, reserving, creating, recording.
    await sleep(ctx.rng.int(0, 120));
    if (!ctx.inFlight.nodes(command).includes(node)) continue;
    const downMs = ctx.rng.int(300, 3000);
    ctx.log(`${sig} agent-${node} with ${command ?? "a request"} in flight; back in ${downMs} ms`);
    // A SIGTERMed agent may drain what is in flight (--cni-drain-timeout, 20 s) before the SIGKILL.
    await ctx.stack.signal(`agent-${node}`, sig, 30_000);
    ctx.inFlight.forget(node);
    await sleep(downMs);
    ctx.stack.respawn(`agent-${node}`);
    return true;
  }
  return false;
}

/** Runs one fault to its end (everything it took down is back up). False if it could not be applied now. */
export async function inject(ctx: FaultContext, kind: FaultKind): Promise<boolean> {
  const { stack, api, rng, log } = ctx;
  switch (kind) {
    case "kill9_agent_mid_add":
      return await hitAgent(ctx, "ADD", "SIGKILL");
    case "kill9_agent_mid_del":
      return await hitAgent(ctx, "DEL", "SIGKILL");
    case "sigterm_agent_in_flight":
      return await hitAgent(ctx, undefined, "SIGTERM");
    case "apiserver_restart":
    case "etcd_restart": {
      const component = kind === "apiserver_restart" ? "apiserver" : "etcd";
      const signal = rng.pick(["SIGKILL", "SIGTERM"] as const);
      const downMs = rng.int(300, 3000);
      log(`${signal} ${component}, down for ${downMs} ms (data kept)`);
      await api.restart(component, { signal, downMs });
      return true;
    }
    case "webhook_down": {
      const downMs = rng.int(1000, 6000);
      log(`webhook down for ${downMs} ms`);
      await stack.signal("webhook", "SIGKILL");
      await sleep(downMs);
      stack.respawn("webhook");
      return true;
    }
    case "node_removed": {
      if (stack.nodes.length < 3) return false;
      const victim = rng.pick(stack.nodes.map((n) => n.name).sort());
      log(`node ${victim} removed for good`);
      await stack.removeNode(victim);
      ctx.inFlight.forget(victim);
      // Its pods are the pod garbage collector's (run.ts); a new machine joins after a while.
      await sleep(rng.int(500, 3000));
      const replacement = ctx.nextNodeName();
      log(`${replacement} joins`);
      await stack.addNode(replacement);
      return true;
    }
    case "kubelet_drops_del":
    case "netns_gone_before_del":
    case "repeated_add":
      ctx.armPodFault(kind, podFaultAnnotation[kind]!);
      return true;
  }
}
