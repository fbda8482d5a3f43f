// danmctl: the operator's tool. Thin composition root; the commands live in core/ctl.
//
//   danmctl status                               networks, host interface readiness, pool usage
//   danmctl showalloc <network> [-n ns] [--kind K] addresses reserved on a network
//   danmctl leaks [--release [--yes]] [--grace S]  duplicates and leaks across all networks (exit 3 if any)
//   danmctl migrate [--dry-run]                   copy danm.k8s.io objects to danm.io, reserve running pods' addresses
//   danmctl dry-run <pod.yaml> [-n ns]            interfaces, addresses, routes the pod would get (changes nothing)
//   global: -o table|json, --kubeconfig PATH (default $KUBECONFIG, else in-cluster)
import "../adapters/runtime/effect_without_async_context.ts";
import { Effect, Layer, Schema } from "effect";
import { layerLiveKube } from "../adapters/kube/live.ts";
import { NetworkKinds } from "../core/api/danm.ts";
import {
  leaks,
  releaseLeaks,
  renderLeaks,
  renderReclaim,
  renderShowAlloc,
  renderStatus,
  showAlloc,
  status,
} from "../core/ctl/commands.ts";
import { dryRun, renderDryRun } from "../core/ctl/dryrun.ts";
import { migrate, migrationComplete, renderMigration } from "../core/ctl/migrate.ts";
import { isConsistent } from "../core/ipam/consistency.ts";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";

const usage = `usage: danmctl <status|showalloc|leaks|migrate|dry-run> [flags]
  status                                 networks, host interface readiness, pool usage
  showalloc <network> [-n NS] [--kind K] addresses reserved on one network (no -n: a ClusterNetwork)
  leaks [--release [--yes]] [--grace S]  duplicates and leaks; --release frees leaked reservations
  migrate [--dry-run]                    copy danm.k8s.io objects to danm.io; reserve the running pods'
                                         addresses in danm's IPAM (exit 3 if one cannot be)
  dry-run <pod.yaml> [-n NS]             interfaces, addresses and routes a pod (or workload) would get
flags: -o table|json   --kubeconfig PATH`;

const Flags = Schema.Struct({
  output: Schema.Literals(["table", "json"]),
  namespace: Schema.optionalKey(Schema.String),
  kind: Schema.optionalKey(Schema.Literals(NetworkKinds)),
  kubeconfig: Schema.optionalKey(Schema.String),
  release: Schema.Boolean,
  yes: Schema.Boolean,
  dryRun: Schema.Boolean,
  grace: Schema.Number.check(Schema.isGreaterThanOrEqualTo(0)),
});

function parseArgs(argv: ReadonlyArray<string>): { command: string; positional: string[]; flags: unknown } {
  const raw: Record<string, unknown> = { output: "table", release: false, yes: false, dryRun: false, grace: 120 };
  const positional: string[] = [];
  const takes: Record<string, string> = {
    "-o": "output",
    "--output": "output",
    "-n": "namespace",
    "--namespace": "namespace",
    "--kind": "kind",
    "--kubeconfig": "kubeconfig",
    "--grace": "grace",
  };
  const bools: Record<string, string> = { "--release": "release", "--yes": "yes", "-y": "yes", "--dry-run": "dryRun" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a in takes) {
      const v = argv[++i];
      raw[takes[a]] = takes[a] === "grace" ? Number(v) : v;
    } else if (a in bools) raw[bools[a]] = true;
    else if (a.startsWith("-")) throw new Error(`unknown flag ${a}\n${usage}`);
    else positional.push(a);
  }
  return { command: positional.shift() ?? "", positional, flags: raw };
}

function confirm(question: string): boolean {
  if (!Deno.stdin.isTerminal()) return false;
  const answer = prompt(`${question} [y/N]`);
  return answer?.trim().toLowerCase() === "y";
}

const print = (json: boolean, data: unknown, text: string) =>
  console.log(json ? JSON.stringify(data, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2) : text);

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(Deno.args);
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    return 2;
  }
  const decoded = Schema.decodeUnknownResult(Flags)(parsed.flags);
  if (decoded._tag === "Failure") {
    console.error(`danmctl: invalid flags: ${decoded.failure.message}\n${usage}`);
    return 2;
  }
  const flags = decoded.success;
  const json = flags.output === "json";
  const kubeconfig = flags.kubeconfig ?? Deno.env.get("KUBECONFIG");
  const kube = layerLiveKube({ config: kubeconfig ? { _tag: "Kubeconfig", path: kubeconfig } : { _tag: "InCluster" } });
  const run = <A, E>(program: Effect.Effect<A, E, Layer.Success<typeof kube>>) =>
    Effect.runPromise(Effect.result(Effect.provide(program, kube)));

  switch (parsed.command) {
    case "status": {
      const r = await run(status);
      if (r._tag === "Failure") return fail(r.failure);
      print(json, r.success, renderStatus(r.success));
      return 0;
    }
    case "showalloc": {
      const name = parsed.positional[0];
      if (!name) {
        console.error(`danmctl showalloc: which network?\n${usage}`);
        return 2;
      }
      const r = await run(showAlloc(name, flags.namespace, flags.kind));
      if (r._tag === "Failure") return fail(r.failure);
      print(json, r.success, renderShowAlloc(r.success));
      return 0;
    }
    case "leaks": {
      const r = await run(leaks({ graceSeconds: flags.grace }));
      if (r._tag === "Failure") return fail(r.failure);
      if (!flags.release) {
        print(json, r.success, renderLeaks(r.success));
        return isConsistent(r.success) ? 0 : 3;
      }
      const n = r.success.leakedReservations.length + r.success.staleBlocks.length;
      if (n === 0) {
        print(json, { freed: [], deletedBlocks: [], raced: 0 }, "nothing to release");
        return 0;
      }
      if (!json) console.log(renderLeaks(r.success));
      if (!flags.yes && !(confirm(`release ${n} leaked reservation(s)/block(s)?`))) {
        console.error("not released (confirm interactively, or pass --yes)");
        return 1;
      }
      const rel = await run(releaseLeaks({ graceSeconds: flags.grace }));
      if (rel._tag === "Failure") return fail(rel.failure);
      print(json, rel.success, renderReclaim(rel.success));
      return 0;
    }
    case "dry-run": {
      const file = parsed.positional[0];
      if (!file) {
        console.error(`danmctl dry-run: which manifest?\n${usage}`);
        return 2;
      }
      let manifest: unknown;
      try {
        manifest = yaml.load(await Deno.readTextFile(file));
      } catch (e) {
        return fail(`${file}: ${e instanceof Error ? e.message : String(e)}`);
      }
      const r = await run(dryRun(manifest, flags.namespace ? { namespace: flags.namespace } : {}));
      if (r._tag === "Failure") return fail(r.failure);
      print(json, r.success, renderDryRun(r.success));
      return 0;
    }
    case "migrate": {
      const r = await run(migrate({ dryRun: flags.dryRun }));
      if (r._tag === "Failure") return fail(r.failure);
      print(json, r.success, renderMigration(r.success));
      // Some running pod's address could not be reserved: danm might hand it out again. Exit as `leaks` does.
      return migrationComplete(r.success) ? 0 : 3;
    }
    default:
      console.error(usage);
      return 2;
  }
}

function fail(e: unknown): number {
  console.error(`danmctl: ${e instanceof Error ? e.message : String(e)}`);
  return 1;
}

Deno.exit(await main());
