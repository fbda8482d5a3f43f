// The test runner behind `deno task test`: installs what the tiers need, runs every tier and prints
// per-tier counts and a final `N passed, M failed` line.
//
//   deno task test                 every tier
//   deno task test unit kernel     only those tiers
//   deno task test integration -- tests/integration/foo_test.ts   narrower file set within a tier
//
// Tiers:
//   static       deno fmt --check, deno lint, deno check .
//   unit         pure logic and in-memory layers; no privileges.
//   integration  a real etcd + kube-apiserver on loopback (one instance for the tier) and real network
//                namespaces on the host kernel. Runs inside a private network + mount namespace so that
//                nothing it creates can leak onto the machine.
//   kernel       tests needing ipvlan / 802.1Q vlan / dummy, run in a QEMU guest (one boot per run), with a real
//                apiserver on this side that the guest reaches through QEMU's user-mode network.
//   e2e          the whole danm stack as real processes (webhook, svcwatcher, a node agent and a fake kubelet per
//                network-namespace node) on an apiserver of its own, shared by its files like the integration tier's.
//   peers        the real peers danm is compared with (DANM v4.3.0, Multus + Whereabouts), built from source, each
//                test file on an apiserver of its own and in a mount namespace of its own (DANM logs to /var/log).
//   node         real nodes: kubelet + containerd + kube-proxy per node, the real control plane, danm installed with
//                `kubectl apply -k` from the images it builds (tests/harness/node); each file starts its cluster.
import {
  ensureK8sBinaries,
  guestHostAddress,
  type SharedApiServer,
  sharedEnvKey,
  startApiServer,
} from "./harness/apiserver.ts";
import { cacheRoot, repoRoot, run } from "./harness/proc.ts";
import { ensureCniPlugins } from "./harness/cniplugins.ts";
import { isolated } from "./harness/isolate.ts";
import { ensurePeers } from "./harness/peers/build.ts";
import { ensureAptPackages } from "./harness/prereq.ts";
import { nodeCommands, prepareNodeBinaries } from "./harness/node/binaries.ts";
import { ensurePromTool } from "./harness/prom.ts";
import { ensureInitramfs, ensureKernel, runInGuest } from "./harness/vm.ts";

const allTiers = ["static", "unit", "integration", "kernel", "e2e", "peers", "node"] as const;
type Tier = typeof allTiers[number];
/** What `deno task test` runs: every tier, the ones with real processes last (CI order, test-environment.md §7). */
const defaultTiers: Tier[] = ["static", "unit", "integration", "kernel", "e2e", "peers", "node"];

interface TierResult {
  readonly tier: Tier;
  readonly passed: number;
  readonly failed: number;
  readonly seconds: number;
  readonly note?: string;
}

const isolatedEnv = "DANM_TEST_ISOLATED";
const isRoot = Deno.uid() === 0;
const log = (s: string) => console.log(`[danm-test] ${s}`);

function parseArgs(): { tiers: Tier[]; files: string[] } {
  const dash = Deno.args.indexOf("--");
  const head = dash < 0 ? Deno.args : Deno.args.slice(0, dash);
  const files = dash < 0 ? [] : Deno.args.slice(dash + 1);
  for (const t of head) {
    if (!allTiers.includes(t as Tier)) {
      console.error(`unknown tier "${t}"; tiers are: ${allTiers.join(", ")}`);
      Deno.exit(2);
    }
  }
  return { tiers: head.length ? head as Tier[] : defaultTiers, files };
}

function needs(tiers: Tier[]): string[] {
  const cmds = new Set<string>(["ip", "openssl"]);
  if (tiers.some((t) => t !== "unit")) ["unshare", "ping"].forEach((c) => cmds.add(c));
  // bench:netpol's smoke run (tests/integration/bench/): nftables rulesets, iperf3 traffic; the policy tables
  // (tests/integration/netpol/): nft inside pod netns through nsenter.
  if (tiers.includes("integration")) ["nft", "iperf3", "nsenter"].forEach((c) => cmds.add(c));
  if (tiers.includes("kernel")) ["qemu-system-x86_64", "busybox", "depmod", "cpio"].forEach((c) => cmds.add(c));
  if (tiers.includes("e2e") || tiers.includes("peers")) cmds.add("nsenter");
  if (tiers.includes("node")) nodeCommands.forEach((c) => cmds.add(c));
  return [...cmds];
}

async function testFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (/_test\.ts$/.test(e.name)) out.push(p);
    }
  };
  await walk(dir).catch(() => {});
  return out.sort();
}

function parseJunit(xml: string): { passed: number; failed: number } {
  const root = xml.match(/<testsuites\b[^>]*>/)?.[0] ?? "";
  const attr = (n: string) => Number(root.match(new RegExp(`\\b${n}="(\\d+)"`))?.[1] ?? "0");
  const tests = attr("tests"), failed = attr("failures") + attr("errors");
  return { passed: tests - failed, failed };
}

/** Warms deno's cache for every module the tiers import (the kernel guest runs with --cached-only). */
async function cacheModules(): Promise<void> {
  const files = [
    ...(await testFiles(`${repoRoot}/tests`)),
    `${repoRoot}/tests/harness/vm_guest.ts`,
  ];
  for await (const e of Deno.readDir(`${repoRoot}/cmd`)) {
    if (e.isFile && e.name.endsWith(".ts")) files.push(`${repoRoot}/cmd/${e.name}`);
  }
  await run([Deno.execPath(), "cache", ...files], { inheritStderr: true });
}

async function denoTest(
  tier: Tier,
  files: string[],
  env: Record<string, string> = {},
  /** A command the test process runs under (e.g. unshare). */
  wrapper: ReadonlyArray<string> = [],
): Promise<TierResult> {
  const start = Date.now();
  if (files.length === 0) {
    return { tier, passed: 0, failed: 1, seconds: 0, note: `no test files found for tier ${tier}` };
  }
  const junit = await Deno.makeTempFile({ prefix: `danm-junit-${tier}-`, suffix: ".xml" });
  const argv = [...wrapper, Deno.execPath(), "test", "-A", `--junit-path=${junit}`, ...files];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: repoRoot,
    env: { ...env, DANM_TEST_TIER: tier },
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const status = await child.status;
  const xml = await Deno.readTextFile(junit).catch(() => "");
  await Deno.remove(junit).catch(() => {});
  const counts = parseJunit(xml);
  const seconds = (Date.now() - start) / 1000;
  if (!status.success && counts.failed === 0) {
    return { tier, ...counts, failed: 1, seconds, note: `deno test exited with ${status.code} before reporting` };
  }
  return { tier, ...counts, seconds };
}

/** A tier whose test files share one apiserver (started here, handed over through the environment). */
async function apiServerTier(tier: "integration" | "e2e", files: string[]): Promise<TierResult> {
  const start = Date.now();
  if (files.length === 0) {
    return { tier, passed: 0, failed: 1, seconds: 0, note: `no test files found for tier ${tier}` };
  }
  let api;
  try {
    api = await startApiServer();
  } catch (e) {
    return { tier, passed: 0, failed: 1, seconds: 0, note: `apiserver did not start: ${e}` };
  }
  log(`kube-apiserver ready at ${api.url} after ${((Date.now() - start) / 1000).toFixed(1)}s`);
  const shared: SharedApiServer = { url: api.url, kubeconfigPath: api.kubeconfigPath, pkiDir: api.pki.dir };
  try {
    return await denoTest(tier, files, { [sharedEnvKey]: JSON.stringify(shared) });
  } finally {
    await api.stop();
    await Deno.remove(api.dir, { recursive: true }).catch(() => {});
  }
}

/** The guest's firmware clears the screen; keep CI logs readable. */
// deno-lint-ignore no-control-regex
const terminalControls = /\x1b\[[0-9;?]*[a-zA-Z]|\x1bc/g;
const stripTerminalControls = (s: string) => s.replace(terminalControls, "");

/** `deno fmt --check`, `deno lint` and `deno check .`: each one counted as a test. */
async function staticTier(): Promise<TierResult> {
  const start = Date.now();
  let passed = 0;
  const failures: string[] = [];
  for (const argv of [["fmt", "--check"], ["lint"], ["check", "."]]) {
    const out = await new Deno.Command(Deno.execPath(), { args: argv, cwd: repoRoot, stdin: "null" }).output();
    const name = `deno ${argv.join(" ")}`;
    if (out.success) {
      passed++;
      log(`${name}: ok`);
    } else {
      failures.push(name);
      console.log(
        new TextDecoder().decode(out.stdout).slice(-4000) + new TextDecoder().decode(out.stderr).slice(-4000),
      );
      log(`${name}: FAILED`);
    }
  }
  return {
    tier: "static",
    passed,
    failed: failures.length,
    seconds: (Date.now() - start) / 1000,
    ...(failures.length ? { note: failures.join(", ") } : {}),
  };
}

async function kernelTier(files: string[]): Promise<TierResult> {
  const start = Date.now();
  if (files.length === 0) return { tier: "kernel", passed: 0, failed: 1, seconds: 0, note: "no kernel test files" };
  // The guest's tests talk to a real apiserver on this side, at 10.0.2.2 (QEMU's user-mode network).
  let api;
  try {
    api = await startApiServer({ servingIps: [guestHostAddress] });
  } catch (e) {
    return { tier: "kernel", passed: 0, failed: 1, seconds: 0, note: `apiserver did not start: ${e}` };
  }
  try {
    return await guestTier(files, start, await guestApiServer(api));
  } finally {
    await api.stop();
    await Deno.remove(api.dir, { recursive: true }).catch(() => {});
  }
}

/** The shared-apiserver handle as the guest sees it: same credentials, the host's address on QEMU's network. */
async function guestApiServer(api: Awaited<ReturnType<typeof startApiServer>>): Promise<SharedApiServer> {
  const url = new URL(api.url);
  const guestUrl = `https://${guestHostAddress}:${url.port}`;
  const kubeconfigPath = `${api.dir}/guest-kubeconfig`;
  await Deno.writeTextFile(kubeconfigPath, (await Deno.readTextFile(api.kubeconfigPath)).replaceAll(api.url, guestUrl));
  return { url: guestUrl, kubeconfigPath, pkiDir: api.pki.dir };
}

async function guestTier(files: string[], start: number, shared: SharedApiServer): Promise<TierResult> {
  const rel = files.map((f) => f.startsWith(repoRoot) ? f.slice(repoRoot.length + 1) : f);
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
  const denoBinDir = Deno.execPath().replace(/\/[^/]+$/, "");
  const result = await runInGuest({
    argv: [Deno.execPath(), "test", "-A", "--cached-only", "--no-check", "--junit-path=/tmp/results/junit.xml", ...rel],
    cwd: repoRoot,
    env: {
      PATH: `${denoBinDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      HOME: Deno.env.get("HOME") ?? "/root",
      DENO_DIR: denoDir,
      DANM_TEST_TIER: "kernel",
      NO_COLOR: "1",
      [sharedEnvKey]: JSON.stringify(shared),
    },
  }, {
    timeoutSec: 1500,
    onOutput: (s) => Deno.stdout.writeSync(new TextEncoder().encode(stripTerminalControls(s))),
  });
  const xml = await Deno.readTextFile(`${result.resultsDir}/junit.xml`).catch(() => "");
  await Deno.remove(result.resultsDir, { recursive: true }).catch(() => {});
  const counts = parseJunit(xml);
  const seconds = (Date.now() - start) / 1000;
  if (result.code !== 0 && counts.failed === 0) {
    return { tier: "kernel", ...counts, failed: 1, seconds, note: `guest exited with ${result.code}` };
  }
  return { tier: "kernel", ...counts, seconds };
}

async function prepare(tiers: Tier[]): Promise<void> {
  await ensureAptPackages(needs(tiers), log);
  await cacheModules();
  if (tiers.some((t) => t === "integration" || t === "kernel" || t === "e2e" || t === "peers" || t === "node")) {
    const t = Date.now();
    const dir = await ensureK8sBinaries();
    log(`kube-apiserver + etcd in ${dir} (${((Date.now() - t) / 1000).toFixed(0)}s)`);
  }
  // Builds that need the network: before the tiers move into their private namespace.
  if (tiers.includes("node")) await prepareNodeBinaries(log);
  if (tiers.some((t) => t !== "unit")) log(`reference CNI plugins in ${await ensureCniPlugins()}`);
  // Prometheus' parser, linter and PromQL engine (tests/tools/prom): built here, the tiers run without network.
  if (tiers.includes("integration")) log(`Prometheus test tool ${await ensurePromTool()}`);
  // The node tier runs Multus + Whereabouts on its real nodes too (tests/node/scale_kubelet_test.ts).
  if (tiers.includes("peers") || tiers.includes("node")) {
    const t = Date.now();
    const peers = await ensurePeers();
    log(`peers in ${Object.values(peers).map((p) => p.dir).join(", ")} (${((Date.now() - t) / 1000).toFixed(0)}s)`);
  }
  if (tiers.includes("kernel")) {
    const k = await ensureKernel();
    await ensureInitramfs(k);
    log(`guest kernel ${k.kver} ready`);
  }
}

async function main(): Promise<number> {
  const { tiers, files } = parseArgs();
  const started = Date.now();
  if (!Deno.env.get(isolatedEnv)) {
    await prepare(tiers);
    if (tiers.some((t) => t !== "unit")) {
      if (!isRoot) {
        console.error("the integration, kernel, e2e and node tiers need root (network namespaces, QEMU, nodes)");
        console.log("0 passed, 1 failed");
        return 1;
      }
      // Re-run inside a private network and mount namespace: namespaces, links and the loopback
      // apiserver created by the tests stay invisible to the machine and vanish with the run.
      return (await isolated(isolatedEnv, import.meta.filename!, Deno.args, {
        DANM_TEST_STARTED: String(started),
      }))!;
    }
  } else {
    await isolated(isolatedEnv, import.meta.filename!, Deno.args);
  }

  const results: TierResult[] = [];
  for (const tier of tiers) {
    const chosen = files.length
      ? files.map((f) => f.startsWith("/") ? f : `${repoRoot}/${f}`)
      : await testFiles(`${repoRoot}/tests/${tier}`);
    log(`tier ${tier}: ${chosen.length} test file(s)`);
    const r = tier === "static"
      ? await staticTier()
      : tier === "integration" || tier === "e2e"
      ? await apiServerTier(tier, chosen)
      : tier === "kernel"
      ? await kernelTier(chosen)
      : tier === "peers"
      ? await denoTest(tier, chosen, {}, ["unshare", "--mount", "--propagation", "private", "--"])
      : await denoTest(tier, chosen);
    results.push(r);
    log(
      `tier ${tier}: ${r.passed + r.failed} ran, ${r.passed} passed, ${r.failed} failed (${r.seconds.toFixed(1)}s)${
        r.note ? ` — ${r.note}` : ""
      }`,
    );
  }
  const passed = results.reduce((a, r) => a + r.passed, 0), failed = results.reduce((a, r) => a + r.failed, 0);
  console.log("");
  for (const r of results) {
    console.log(
      `  ${r.tier.padEnd(12)} ${String(r.passed).padStart(4)} passed ${String(r.failed).padStart(4)} failed${
        r.note ? `  (${r.note})` : ""
      }`,
    );
  }
  const total = (Date.now() - Number(Deno.env.get("DANM_TEST_STARTED") ?? started)) / 1000;
  console.log(`total time ${total.toFixed(0)}s; cache at ${cacheRoot()}`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

Deno.exit(await main());
