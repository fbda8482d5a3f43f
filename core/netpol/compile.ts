// A pod's compiled rules: for each policed interface, whether ingress / egress is isolated and the flows the union
// of the applying rules allows, with peers resolved to addresses on that interface's network and named ports to
// numbers (ingress: the policed pod's own containers; egress: each peer pod's).
import type { MultiNetworkPolicy, PolicyPeer, PolicyPort } from "../api/netpol.ts";
import type {
  AddressBlocks,
  Direction,
  Flow,
  InterfaceRules,
  NetworkKey,
  PodKey,
  PodRules,
  PolicyKey,
  PolicyWorld,
  PortRange,
  Protocol,
  WorldPod,
} from "./model.ts";
import { blocksContain, isEmptyBlocks, peerAddresses, podAddresses, unionBlocks } from "./peers.ts";
import { applyingPolicies, policyTypes } from "./select.ts";

type Way = "ingress" | "egress";

/** One `ports` entry: protocol (TCP by default) and a range, a named port, or every port of the protocol. */
type PortSpec =
  | { readonly _tag: "Range"; readonly protocol: Protocol; readonly range?: PortRange }
  | { readonly _tag: "Named"; readonly protocol: Protocol; readonly name: string };

function portSpec(p: PolicyPort): PortSpec | undefined {
  const protocol = p.protocol ?? "TCP";
  const port = p.port ?? undefined;
  if (port === undefined) return { _tag: "Range", protocol };
  if (typeof port === "string") {
    // "80" is how some clients spell a number; the API server would have it as an int.
    if (!/^\d+$/.test(port)) return { _tag: "Named", protocol, name: port };
    return portSpec({ ...p, port: Number(port) });
  }
  const end = p.endPort ?? port;
  // Out-of-range or inverted ports are refused by the webhook; enforcement allows nothing for them.
  if (!Number.isInteger(port) || !Number.isInteger(end) || port < 1 || end < port || end > 65535) return undefined;
  return { _tag: "Range", protocol, range: { from: port, to: end } };
}

/** A named port on a pod: the first container port of that name and protocol. */
const namedPort = (pod: WorldPod | undefined, name: string, protocol: Protocol): number | undefined =>
  pod?.ports.find((p) => p.name === name && p.protocol === protocol)?.port;

/**
 * What compiling one pod learns that holds for every pod of the same world snapshot: a rule's peers resolved on a
 * network, and its egress named-port flows. Many pods share a policy, so a batch compiles each rule's peers once.
 * Valid for ONE world: make a new cache when anything changes.
 */
export interface CompileCache {
  readonly rules: WeakMap<MultiNetworkPolicy, Map<string, AddressBlocks | "any" | Flow[]>>;
}

export const newCompileCache = (): CompileCache => ({ rules: new WeakMap() });

function cached<T extends AddressBlocks | "any" | Flow[]>(c: RuleContext, key: string, make: () => T): T {
  let perPolicy = c.cache.rules.get(c.policy);
  if (!perPolicy) c.cache.rules.set(c.policy, perPolicy = new Map());
  const full = `${c.way}/${c.index}/${c.network}/${key}`;
  const hit = perPolicy.get(full);
  if (hit !== undefined) return hit as T;
  const value = make();
  perPolicy.set(full, value);
  return value;
}

interface RuleContext {
  readonly cache: CompileCache;
  readonly world: PolicyWorld;
  readonly pod: PodKey;
  readonly network: NetworkKey;
  readonly policyKey: PolicyKey;
  readonly policy: MultiNetworkPolicy;
  readonly way: Way;
  readonly index: number;
}

/** Every pod with an address on the network: who "all peers" can mean for an egress named port. */
function podsOnNetwork(world: PolicyWorld, network: NetworkKey): ReadonlyArray<readonly [PodKey, WorldPod]> {
  const out: Array<readonly [PodKey, WorldPod]> = [];
  for (const entry of world.pods) {
    if ((world.attachments.get(entry[0]) ?? []).some((a) => a.network === network)) out.push(entry);
  }
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Egress to a named port: the port is looked up on each destination pod on the network that the rule's peers admit
 * (selected, or inside an ipBlock); destinations are grouped by the number it resolves to there.
 */
function egressNamedFlows(c: RuleContext, peers: AddressBlocks | "any", spec: PortSpec & { _tag: "Named" }): Flow[] {
  const byPort = new Map<number, AddressBlocks[]>();
  for (const [key, pod] of podsOnNetwork(c.world, c.network)) {
    const port = namedPort(pod, spec.name, spec.protocol);
    if (port === undefined) continue;
    const own = podAddresses(c.world, key, c.network);
    const admitted = peers === "any" ? own : {
      v4: own.v4.filter((a) => blocksContain(peers, a.slice(0, a.indexOf("/")))),
      v6: own.v6.filter((a) => blocksContain(peers, a.slice(0, a.indexOf("/")))),
    };
    byPort.set(port, [...(byPort.get(port) ?? []), admitted]);
  }
  return [...byPort].sort(([a], [b]) => a - b).map(([port, blocks]): Flow => ({
    peers: unionBlocks(blocks),
    protocol: spec.protocol,
    ports: { from: port, to: port },
    origin: { policy: c.policyKey, rule: c.index },
  }));
}

/** The flows one ingress or egress rule allows. */
function ruleFlows(
  c: RuleContext,
  peerList: ReadonlyArray<PolicyPeer> | null | undefined,
  portList: ReadonlyArray<PolicyPort> | null | undefined,
): Flow[] {
  const origin = { policy: c.policyKey, rule: c.index };
  // An empty or absent peer list means every peer; an empty or absent port list every port and protocol.
  const peers = peerList && peerList.length > 0 ? peerList : undefined;
  const resolved: AddressBlocks | "any" = peers === undefined
    ? "any"
    : cached(c, "peers", () => unionBlocks(peers.map((p) => peerAddresses(c.world, c.policy, p, c.network))));
  if (!portList || portList.length === 0) return [{ peers: resolved, origin }];
  const out: Flow[] = [];
  for (const [portIndex, p] of portList.entries()) {
    const spec = portSpec(p);
    if (spec === undefined) continue;
    if (spec._tag === "Range") {
      out.push({ peers: resolved, protocol: spec.protocol, ...(spec.range ? { ports: spec.range } : {}), origin });
    } else if (c.way === "ingress") {
      const port = namedPort(c.world.pods.get(c.pod), spec.name, spec.protocol);
      if (port !== undefined) {
        out.push({ peers: resolved, protocol: spec.protocol, ports: { from: port, to: port }, origin });
      }
    } else out.push(...cached(c, `port${portIndex}`, () => egressNamedFlows(c, resolved, spec)));
  }
  return out;
}

/** One direction of one interface: isolated when an applying policy has that type; the union of their rules. */
function direction(
  cache: CompileCache,
  world: PolicyWorld,
  pod: PodKey,
  network: NetworkKey,
  policies: ReadonlyArray<readonly [PolicyKey, MultiNetworkPolicy]>,
  way: Way,
): Direction | undefined {
  const isolating = policies.filter(([, p]) => policyTypes(p)[way]);
  if (isolating.length === 0) return undefined;
  const flows: Flow[] = [];
  for (const [policyKey, policy] of isolating) {
    const rules = way === "ingress"
      ? (policy.spec?.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports }))
      : (policy.spec?.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
    for (const [index, rule] of rules.entries()) {
      flows.push(...ruleFlows({ cache, world, pod, network, policyKey, policy, way, index }, rule.peers, rule.ports));
    }
  }
  // A rule whose peers resolve to no address allows nothing: drop it rather than render an empty set.
  return {
    policies: isolating.map(([k]) => k),
    flows: flows.filter((f) => f.peers === "any" || !isEmptyBlocks(f.peers)),
  };
}

/**
 * The compiled rules of one pod: only its policed interfaces, sorted by name; none when no policy applies. Pass one
 * `cache` to every pod of a batch over the same world (see `compilePods`).
 */
export function compilePod(world: PolicyWorld, pod: PodKey, cache: CompileCache = newCompileCache()): PodRules {
  const interfaces: InterfaceRules[] = [];
  for (const { attachment, policies } of applyingPolicies(world, pod)) {
    const ingress = direction(cache, world, pod, attachment.network, policies, "ingress");
    const egress = direction(cache, world, pod, attachment.network, policies, "egress");
    if (!ingress && !egress) continue;
    interfaces.push({
      ifName: attachment.ifName,
      network: attachment.network,
      ...(ingress ? { ingress } : {}),
      ...(egress ? { egress } : {}),
    });
  }
  return { pod, interfaces: interfaces.sort((a, b) => (a.ifName < b.ifName ? -1 : a.ifName > b.ifName ? 1 : 0)) };
}

/** The compiled rules of several pods of one world, sharing what their policies have in common. */
export function compilePods(world: PolicyWorld, pods: Iterable<PodKey>): Map<PodKey, PodRules> {
  const cache = newCompileCache();
  const out = new Map<PodKey, PodRules>();
  for (const pod of pods) out.set(pod, compilePod(world, pod, cache));
  return out;
}
