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
import { blocksIntersector, isEmptyBlocks, peerAddresses, podAddresses, unionBlocks } from "./peers.ts";
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
 * network (and each peer, which rules naming it alike share), its egress named-port flows, where each named port
 * leads, and whole compiled interfaces by what they depend on (see compilePod): many pods share a policy, so a
 * batch compiles each rule's peers once and each combination of policies once.
 * Valid for ONE world: make a new cache when anything changes.
 */
export interface CompileCache {
  readonly rules: WeakMap<MultiNetworkPolicy, Map<string, AddressBlocks | "any" | Flow[]>>;
  readonly interfaces: Map<string, ReadonlyArray<InterfaceRules>>;
  readonly namedPorts: Map<string, ReadonlyArray<readonly [number, AddressBlocks]>>;
  readonly peers: Map<string, AddressBlocks>;
}

export const newCompileCache = (): CompileCache => ({
  rules: new WeakMap(),
  interfaces: new Map(),
  namedPorts: new Map(),
  peers: new Map(),
});

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

/**
 * Where a named port leads on a network: every pod there with a container port of that name and protocol, their
 * addresses on the network grouped by the number the name resolves to on each (sorted by number). The same for
 * every rule of the world that names the port: cached per world.
 */
function namedPortTargets(
  c: RuleContext,
  spec: PortSpec & { _tag: "Named" },
): ReadonlyArray<readonly [number, AddressBlocks]> {
  const key = `${c.network}\n${spec.protocol}\n${spec.name}`;
  const hit = c.cache.namedPorts.get(key);
  if (hit) return hit;
  const byPort = new Map<number, AddressBlocks[]>();
  for (const [pod, wp] of c.world.pods) {
    const port = namedPort(wp, spec.name, spec.protocol);
    if (port === undefined || !(c.world.attachments.get(pod) ?? []).some((a) => a.network === c.network)) continue;
    const list = byPort.get(port);
    const own = podAddresses(c.world, pod, c.network);
    if (list) list.push(own);
    else byPort.set(port, [own]);
  }
  const out = [...byPort].sort(([a], [b]) => a - b).map(([port, blocks]) => [port, unionBlocks(blocks)] as const);
  c.cache.namedPorts.set(key, out);
  return out;
}

/**
 * Egress to a named port: the port is looked up on each destination pod on the network that the rule's peers admit
 * (selected, or inside an ipBlock); destinations are grouped by the number it resolves to there. (The addresses a
 * rule admits of a group are the group's addresses within its peers: the union of each pod's.)
 */
function egressNamedFlows(c: RuleContext, peers: AddressBlocks | "any", spec: PortSpec & { _tag: "Named" }): Flow[] {
  const admit = peers === "any" ? undefined : blocksIntersector(peers);
  return namedPortTargets(c, spec).map(([port, blocks]): Flow => ({
    peers: admit ? admit(blocks) : blocks,
    protocol: spec.protocol,
    ports: { from: port, to: port },
    origin: { policy: c.policyKey, rule: c.index },
  }));
}

/**
 * One peer resolved on the rule's network. Policies often name the same peer (the same selectors): it is resolved
 * once per world. A peer without a namespaceSelector is read in the policy's namespace (an ipBlock in none).
 */
function peerOnNetwork(c: RuleContext, peer: PolicyPeer): AddressBlocks {
  const scope = peer.ipBlock || peer.namespaceSelector ? "" : c.policy.metadata.namespace ?? "";
  const key = `${c.network}\n${scope}\n${JSON.stringify(peer)}`;
  let blocks = c.cache.peers.get(key);
  if (!blocks) c.cache.peers.set(key, blocks = peerAddresses(c.world, c.policy, peer, c.network));
  return blocks;
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
    : cached(c, "peers", () => unionBlocks(peers.map((p) => peerOnNetwork(c, p))));
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
  const applied = applyingPolicies(world, pod);
  // Within one world a pod's rules depend on the pod only through its policed interfaces (name, network, the
  // policies applying there) and its own named ports (ingress named ports): pods alike in those share one result.
  const signature = JSON.stringify([
    applied.map(({ attachment, policies }) => [attachment.ifName, attachment.network, policies.map(([k]) => k)]),
    world.pods.get(pod)?.ports ?? [],
  ]);
  const shared = cache.interfaces.get(signature);
  if (shared) return { pod, interfaces: shared };
  const interfaces: InterfaceRules[] = [];
  for (const { attachment, policies } of applied) {
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
  interfaces.sort((a, b) => (a.ifName < b.ifName ? -1 : a.ifName > b.ifName ? 1 : 0));
  cache.interfaces.set(signature, interfaces);
  return { pod, interfaces };
}

/** The compiled rules of several pods of one world, sharing what their policies have in common. */
export function compilePods(world: PolicyWorld, pods: Iterable<PodKey>): Map<PodKey, PodRules> {
  const cache = newCompileCache();
  const out = new Map<PodKey, PodRules>();
  for (const pod of pods) out.set(pod, compilePod(world, pod, cache));
  return out;
}
