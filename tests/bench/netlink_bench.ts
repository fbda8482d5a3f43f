// `deno task bench:netlink`: the pod-style interface setup done N times through the FFI netlink layer and,
// in the same run, through `ip` invocations (the baseline), in two variants (veth end created in the pod
// namespace, or created on the host and moved there). Needs root; it re-runs itself inside a private
// network + mount namespace (as the test runner does), so nothing it creates is visible outside.
//
//   deno task bench:netlink [-- N]        default N = 50
//
// Prints human-readable lines, then one JSON object as the last line: {ffi_ms, ip_ms, ratio, move_*, …}.
import { Effect, Schema } from "effect";
import { Netlink, NetnsRef } from "../../core/ports/netlink.ts";
import * as Live from "../../adapters/netlink/live.ts";
import { isolated } from "../harness/isolate.ts";
import { run } from "../harness/proc.ts";

const isolatedEnv = "DANM_BENCH_ISOLATED";
const iterations = Number(Deno.args[0] ?? 50);
if (!Number.isInteger(iterations) || iterations < 1) {
  console.error(`usage: netlink_bench.ts [iterations ≥ 1], got ${Deno.args[0]}`);
  Deno.exit(2);
}

const outside = await isolated(isolatedEnv, import.meta.filename!, Deno.args).catch((e) => {
  console.error(`bench:netlink: ${e instanceof Error ? e.message : e}`);
  return 1;
});
if (outside !== undefined) Deno.exit(outside);

type Variant = "create" | "move";

/**
 * The pod-style setup through the FFI layer. "create" puts the veth's pod end into the namespace as it is
 * created (how CNI plugins do it); "move" creates both ends on the host and moves one (one RTM_NEWLINK more).
 * The namespace is made before and removed after the timed part, in both paths alike; removing it takes the
 * veth pair with it, asynchronously, so the timings hold the pod setup only.
 */
const ffiPod = (variant: Variant, i: number) =>
  Effect.gen(function* () {
    const nl = yield* Netlink;
    const name = `f${variant[0]}${i}`, host = `vhf${variant[0]}${i}`;
    const path = yield* nl.createNetns(name);
    const start = performance.now();
    yield* Effect.scoped(Effect.gen(function* () {
      const pod = yield* nl.netns(NetnsRef.path(path));
      if (variant === "create") {
        yield* nl.host.createLink({ kind: "veth", name: host, peer: { name: "tmp0", netns: NetnsRef.path(path) } });
      } else {
        yield* nl.host.createLink({ kind: "veth", name: host, peer: { name: "tmp0" } });
        yield* nl.host.moveLink("tmp0", NetnsRef.path(path));
      }
      yield* pod.setLink("tmp0", { name: "eth0" });
      yield* pod.addAddress({ link: "eth0", cidr: "10.1.0.5/24" });
      yield* pod.addAddress({ link: "eth0", cidr: "2001:db8:1::5/64", nodad: true });
      yield* pod.setLink("lo", { up: true });
      yield* pod.setLink("eth0", { up: true });
      yield* nl.host.setLink(host, { up: true });
      yield* pod.addRoute({ dst: "default", gateway: "10.1.0.1", link: "eth0" });
      yield* pod.addRoute({ dst: "10.9.0.0/16", gateway: "10.1.0.1", table: 100 });
      yield* pod.addRule({ src: "10.1.0.5/32", table: 100, priority: 100 });
    }));
    const elapsed = performance.now() - start;
    if (i === 0) yield* Effect.promise(() => verify(name));
    yield* nl.deleteNetns(name);
    return elapsed;
  });

/** The same steps as `ip` invocations (argv arrays, one process each). */
async function ipPod(variant: Variant, i: number): Promise<number> {
  const ns = `i${variant[0]}${i}`, host = `vhi${variant[0]}${i}`;
  await run(["ip", "netns", "add", ns]);
  const steps: string[][] = [
    ...(variant === "create"
      ? [["ip", "link", "add", host, "type", "veth", "peer", "name", "tmp0", "netns", ns]]
      : [["ip", "link", "add", host, "type", "veth", "peer", "name", "tmp0"], [
        "ip",
        "link",
        "set",
        "tmp0",
        "netns",
        ns,
      ]]),
    ["ip", "-n", ns, "link", "set", "tmp0", "name", "eth0"],
    ["ip", "-n", ns, "addr", "add", "10.1.0.5/24", "dev", "eth0"],
    ["ip", "-n", ns, "addr", "add", "2001:db8:1::5/64", "dev", "eth0", "nodad"],
    ["ip", "-n", ns, "link", "set", "lo", "up"],
    ["ip", "-n", ns, "link", "set", "eth0", "up"],
    ["ip", "link", "set", host, "up"],
    ["ip", "-n", ns, "route", "add", "default", "via", "10.1.0.1", "dev", "eth0"],
    ["ip", "-n", ns, "route", "add", "10.9.0.0/16", "via", "10.1.0.1", "table", "100"],
    ["ip", "-n", ns, "rule", "add", "from", "10.1.0.5/32", "table", "100", "priority", "100"],
  ];
  const start = performance.now();
  for (const argv of steps) await run(argv);
  const elapsed = performance.now() - start;
  if (i === 0) await verify(ns);
  await run(["ip", "netns", "del", ns]);
  return elapsed;
}

// `ip -json` output is external input: decoded with Schema.
const IpAddrs = {
  decode: Schema.decodeUnknownSync(Schema.Array(Schema.Struct({
    addr_info: Schema.Array(Schema.Struct({ local: Schema.String, prefixlen: Schema.Number, scope: Schema.String })),
  }))),
};

/** Both paths must leave the same state behind; checked on each path's warm-up round, outside the timing. */
async function verify(ns: string): Promise<void> {
  const addrs = IpAddrs.decode(JSON.parse(await run(["ip", "-n", ns, "-json", "addr", "show", "dev", "eth0"])));
  const global = addrs[0].addr_info.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`).sort();
  const routes = (await run(["ip", "-n", ns, "route", "show", "table", "100"])).trim();
  const rule = (await run(["ip", "-n", ns, "rule", "show", "priority", "100"])).trim();
  const ok = global.join(",") === "10.1.0.5/24,2001:db8:1::5/64" && routes.startsWith("10.9.0.0/16 via 10.1.0.1") &&
    rule.startsWith("100:");
  if (!ok) throw new Error(`netns ${ns} is not in the expected state: ${global} | ${routes} | ${rule}`);
}

const layer = Live.layer();
const ffiTotal = (variant: Variant, from: number, count: number) =>
  Effect.runPromise(Effect.provide(
    Effect.gen(function* () {
      let sum = 0;
      for (let i = from; i < from + count; i++) sum += yield* ffiPod(variant, i);
      return sum;
    }),
    layer,
  ));
async function ipTotal(variant: Variant, from: number, count: number): Promise<number> {
  let sum = 0;
  for (let i = from; i < from + count; i++) sum += await ipPod(variant, i);
  return sum;
}

const results: Record<Variant, { ffi: number; ip: number; ops: number }> = {
  create: { ffi: 0, ip: 0, ops: 10 },
  move: { ffi: 0, ip: 0, ops: 11 },
};
for (const variant of ["create", "move"] as const) {
  // Warm-up round (JIT, first sockets, the state check), not counted.
  await ffiTotal(variant, 0, 1);
  await ipTotal(variant, 0, 1);
  results[variant].ffi = await ffiTotal(variant, 1, iterations);
  results[variant].ip = await ipTotal(variant, 1, iterations);
}

const leftovers = [...Deno.readDirSync("/run/netns")].length;
const ms = (x: number) => Number(x.toFixed(1));
const per = (x: number) => (x / iterations).toFixed(2);
for (const variant of ["create", "move"] as const) {
  const r = results[variant];
  console.log(
    `pod setup, veth end ${variant === "create" ? "created in the pod netns" : "moved into the pod netns"} ` +
      `(${r.ops} operations), ${iterations} pods`,
  );
  console.log(`  FFI netlink : ${r.ffi.toFixed(1)} ms, ${per(r.ffi)} ms per pod`);
  console.log(`  ip commands : ${r.ip.toFixed(1)} ms, ${per(r.ip)} ms per pod`);
  console.log(`  ratio       : ${(r.ip / r.ffi).toFixed(1)}x`);
}
console.log(
  "  (moving a link makes the kernel wait for an RCU grace period — tens of ms here — in both paths alike)",
);
console.log(`namespaces left behind: ${leftovers}`);
const c = results.create, m = results.move;
console.log(JSON.stringify({
  bench: "netlink",
  iterations,
  sequence: "veth (pod end created in netns), rename, v4+v6 nodad addresses, lo/eth0/host up, 2 routes, rule",
  ops_per_pod: c.ops,
  ffi_ms: ms(c.ffi),
  ip_ms: ms(c.ip),
  ratio: Number((c.ip / c.ffi).toFixed(2)),
  target_ratio: 5,
  move_ffi_ms: ms(m.ffi),
  move_ip_ms: ms(m.ip),
  move_ratio: Number((m.ip / m.ffi).toFixed(2)),
  leftovers,
}));
Deno.exit(leftovers === 0 ? 0 : 1);
