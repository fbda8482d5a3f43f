// Throw-away network namespaces, veth pairs and bridges for the host netns tier.
//
// The harness drives iproute2 (argv arrays, never a shell): it is the independent observer that
// danm's own netlink code is checked against. Everything a scope creates is removed by dispose(),
// which tests call in `finally` (or through `using`), so a failing test leaves nothing behind.
import { Schema } from "effect";
import { run } from "./proc.ts";

export interface NetnsScope extends AsyncDisposable {
  /** Creates a named netns (name gets a random suffix) with loopback up; returns its name. */
  netns(prefix: string): Promise<string>;
  /** Path of a netns created by this scope, as CNI_NETNS would carry it. */
  path(ns: string): string;
  /** Creates a veth pair; each end is moved into its namespace (undefined = the current one). */
  veth(a: { name: string; ns?: string }, b: { name: string; ns?: string }): Promise<void>;
  /** Creates a bridge (in ns, or the current namespace) and brings it up. */
  bridge(name: string, ns?: string): Promise<void>;
  /** Runs `ip` inside ns (or in the current namespace when ns is undefined). */
  ip(ns: string | undefined, ...args: string[]): Promise<string>;
  /** `ip -json` output, parsed. */
  ipJson(ns: string | undefined, ...args: string[]): Promise<unknown[]>;
  /** Runs any command inside ns via `ip netns exec`. */
  exec(ns: string, ...argv: string[]): Promise<string>;
  dispose(): Promise<void>;
}

export function netnsScope(): NetnsScope {
  const namespaces: string[] = [];
  const hostLinks: string[] = [];
  const ipIn = (ns: string | undefined, args: string[]) => run(ns ? ["ip", "-n", ns, ...args] : ["ip", ...args]);

  const dispose = async () => {
    for (const link of hostLinks.reverse()) await run(["ip", "link", "del", link]).catch(() => {});
    for (const ns of namespaces.reverse()) await run(["ip", "netns", "del", ns]).catch(() => {});
    namespaces.length = 0;
    hostLinks.length = 0;
  };

  return {
    async netns(prefix) {
      const name = `${prefix}-${crypto.randomUUID().slice(0, 6)}`;
      await run(["ip", "netns", "add", name]);
      namespaces.push(name);
      await run(["ip", "-n", name, "link", "set", "lo", "up"]);
      return name;
    },
    path: (ns) => `/run/netns/${ns}`,
    async veth(a, b) {
      await run(["ip", "link", "add", a.name, "type", "veth", "peer", "name", b.name]);
      if (!a.ns || !b.ns) hostLinks.push(a.ns ? b.name : a.name);
      if (a.ns) await run(["ip", "link", "set", a.name, "netns", a.ns]);
      if (b.ns) await run(["ip", "link", "set", b.name, "netns", b.ns]);
      await ipIn(a.ns, ["link", "set", a.name, "up"]);
      await ipIn(b.ns, ["link", "set", b.name, "up"]);
    },
    async bridge(name, ns) {
      await ipIn(ns, ["link", "add", name, "type", "bridge"]);
      if (!ns) hostLinks.push(name);
      await ipIn(ns, ["link", "set", name, "up"]);
    },
    ip: (ns, ...args) => ipIn(ns, args),
    async ipJson(ns, ...args) {
      const out = await ipIn(ns, ["-json", ...args]);
      return out.trim() === "" ? [] : JSON.parse(out) as unknown[];
    },
    exec: (ns, ...argv) => run(["ip", "netns", "exec", ns, ...argv]),
    dispose,
    [Symbol.asyncDispose]: dispose,
  };
}

/** Sends `count` pings from inside ns; resolves true when at least one reply came back. */
export async function ping(ns: string, target: string, count = 2): Promise<boolean> {
  const argv = [
    "ip",
    "netns",
    "exec",
    ns,
    "ping",
    target.includes(":") ? "-6" : "-4",
    "-c",
    String(count),
    "-W",
    "2",
    target,
  ];
  return await run(argv).then(() => true, () => false);
}

const LinkAddresses = Schema.Array(Schema.Struct({
  ifname: Schema.String,
  addr_info: Schema.optionalKey(Schema.Array(Schema.Struct({ local: Schema.String, prefixlen: Schema.Number }))),
}));
const decodeLinkAddresses = Schema.decodeUnknownSync(LinkAddresses);

/** The links of namespace `ns` but lo, each with its addresses (`address/prefix`), as iproute2 reports them. */
export async function linkAddresses(ns: string): Promise<Array<{ name: string; addresses: string[] }>> {
  const raw = await run(["ip", "-n", ns, "-json", "addr", "show"]);
  return decodeLinkAddresses(raw.trim() ? JSON.parse(raw) : [])
    .filter((l) => l.ifname !== "lo")
    .map((l) => ({ name: l.ifname, addresses: (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`) }));
}
