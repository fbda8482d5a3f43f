// danmctl: the operator's tool. Thin composition root; the commands live in core/ctl. Each command's name, usage
// and run are one entry of `commands` below (`danmctl --help` prints them).
import "../adapters/runtime/effect_without_async_context.ts";
import { Effect, type Layer, type Result, Schema } from "effect";
import { parseCommandLineOrExit } from "../adapters/cli/main.ts";
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
import { reach, renderReach } from "../core/ctl/reach.ts";
import { isConsistent } from "../core/ipam/consistency.ts";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";

const Flags = Schema.Struct({
  output: Schema.Literals(["table", "json"]),
  namespace: Schema.optionalKey(Schema.String),
  kind: Schema.optionalKey(Schema.Literals(NetworkKinds)),
  kubeconfig: Schema.optionalKey(Schema.String),
  release: Schema.Boolean,
  yes: Schema.Boolean,
  "dry-run": Schema.Boolean,
  grace: Schema.NumberFromString.check(Schema.isFinite(), Schema.isGreaterThanOrEqualTo(0)),
});
type Flags = typeof Flags.Type;

function confirm(question: string): boolean {
  if (!Deno.stdin.isTerminal()) return false;
  const answer = prompt(`${question} [y/N]`);
  return answer?.trim().toLowerCase() === "y";
}

const print = (json: boolean, data: unknown, text: string) =>
  console.log(json ? JSON.stringify(data, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2) : text);

const kubeLayer = (flags: Flags) => {
  const kubeconfig = flags.kubeconfig ?? Deno.env.get("KUBECONFIG");
  return layerLiveKube({ config: kubeconfig ? { _tag: "Kubeconfig", path: kubeconfig } : { _tag: "InCluster" } });
};
type Kube = Layer.Success<ReturnType<typeof kubeLayer>>;
type KubeSetupError = Layer.Error<ReturnType<typeof kubeLayer>>;

/** What a command gets: its positional arguments, the flags, and a runner of programs against the cluster. */
interface Invocation {
  readonly args: ReadonlyArray<string>;
  readonly flags: Flags;
  readonly json: boolean;
  readonly run: <A, E>(program: Effect.Effect<A, E, Kube>) => Promise<Result.Result<A, E | KubeSetupError>>;
}

interface Command {
  /** Arguments and flags after the command's name, as the usage shows them. */
  readonly synopsis: string;
  /** One line or more, aligned by `usage`. */
  readonly about: ReadonlyArray<string>;
  /** The exit code: 0 done, 1 failed, 2 misused, 3 problems found. */
  readonly run: (i: Invocation) => Promise<number>;
}

/** The first positional argument, or a usage error naming what is missing. */
const required = (command: string, i: Invocation, what: string): string | undefined => {
  const value = i.args[0];
  if (!value) console.error(`danmctl ${command}: ${what}?\n${usage()}`);
  return value;
};

const commands: Readonly<Record<string, Command>> = {
  status: {
    synopsis: "",
    about: ["networks, host interface readiness, pool usage"],
    run: async ({ json, run }) => {
      const r = await run(status);
      if (r._tag === "Failure") return fail(r.failure);
      print(json, r.success, renderStatus(r.success));
      return 0;
    },
  },
  showalloc: {
    synopsis: "<network> [-n NS] [--kind K]",
    about: ["addresses reserved on one network (no -n: a ClusterNetwork)"],
    run: async (i) => {
      const name = required("showalloc", i, "which network");
      if (!name) return 2;
      const r = await i.run(showAlloc(name, i.flags.namespace, i.flags.kind));
      if (r._tag === "Failure") return fail(r.failure);
      print(i.json, r.success, renderShowAlloc(r.success));
      return 0;
    },
  },
  leaks: {
    synopsis: "[--release [--yes]] [--grace S]",
    about: ["duplicates and leaks (exit 3 if any); --release frees leaked reservations"],
    run: async ({ flags, json, run }) => {
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
    },
  },
  migrate: {
    synopsis: "[--dry-run]",
    about: [
      "copy danm.k8s.io objects to danm.io; reserve the running pods'",
      "addresses in danm's IPAM (exit 3 if one cannot be)",
    ],
    run: async ({ flags, json, run }) => {
      const r = await run(migrate({ dryRun: flags["dry-run"] }));
      if (r._tag === "Failure") return fail(r.failure);
      print(json, r.success, renderMigration(r.success));
      // Some running pod's address could not be reserved: danm might hand it out again. Exit as `leaks` does.
      return migrationComplete(r.success) ? 0 : 3;
    },
  },
  "dry-run": {
    synopsis: "<pod.yaml> | reach <from> <to> <network> <port>[/proto] [-n NS]",
    about: [
      "interfaces, addresses and routes a pod (or workload) would get (changes nothing);",
      "reach: may one pod reach another there, by the MultiNetworkPolicies (exit 3 if denied)",
    ],
    run: async (i) => {
      if (i.args[0] === "reach") return await reachCommand(i);
      const file = required("dry-run", i, "which manifest");
      if (!file) return 2;
      let manifest: unknown;
      try {
        manifest = yaml.load(await Deno.readTextFile(file));
      } catch (e) {
        return fail(`${file}: ${e instanceof Error ? e.message : String(e)}`);
      }
      const r = await i.run(dryRun(manifest, i.flags.namespace ? { namespace: i.flags.namespace } : {}));
      if (r._tag === "Failure") return fail(r.failure);
      print(i.json, r.success, renderDryRun(r.success));
      return 0;
    },
  },
};

async function reachCommand(i: Invocation): Promise<number> {
  const [, from, to, network, port, ...extra] = i.args;
  if (port === undefined || extra.length > 0) {
    console.error(`danmctl dry-run reach: <from-pod> <to-pod> <network> <port>[/proto]?\n${usage()}`);
    return 2;
  }
  const r = await i.run(
    reach({ from, to, network, port, ...(i.flags.namespace ? { namespace: i.flags.namespace } : {}) }),
  );
  if (r._tag === "Failure") return fail(r.failure);
  print(i.json, r.success, renderReach(r.success));
  return r.success.allowed ? 0 : 3;
}

function usage(): string {
  const rows = Object.entries(commands).map(([name, c]) => [`${name} ${c.synopsis}`.trim(), c.about] as const);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  const lines = rows.flatMap(([left, about]) =>
    about.map((line, n) => `  ${(n === 0 ? left : "").padEnd(width)}${line}`)
  );
  return [
    `usage: danmctl <${Object.keys(commands).join("|")}> [flags]`,
    ...lines,
    "flags: -o table|json   --kubeconfig PATH (default $KUBECONFIG, else in-cluster)   -h, --help",
  ].join("\n");
}

async function main(): Promise<number> {
  const { flags, positionals } = parseCommandLineOrExit("danmctl", usage, {
    output: { type: "string", short: "o", default: "table" },
    namespace: { type: "string", short: "n" },
    kind: { type: "string" },
    kubeconfig: { type: "string" },
    grace: { type: "string", default: "120" },
    release: { type: "boolean", default: false },
    yes: { type: "boolean", short: "y", default: false },
    "dry-run": { type: "boolean", default: false },
  }, Flags);
  const [name, ...args] = positionals;
  const command = name !== undefined && Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    console.error(usage());
    return 2;
  }
  const kube = kubeLayer(flags);
  return await command.run({
    args,
    flags,
    json: flags.output === "json",
    run: (program) => Effect.runPromise(Effect.result(Effect.provide(program, kube))),
  });
}

function fail(e: unknown): number {
  console.error(`danmctl: ${e instanceof Error ? e.message : String(e)}`);
  return 1;
}

Deno.exit(await main());
