// Delegation to other CNI plugins (danm-spec §4.4, §4.6): the configurations danm loads (static
// <cniDir>/<NetworkID>.conf or .conflist, a NetworkAttachmentDefinition's spec.config; the generated ones live with
// their backends in core/cni/backends), and running them the way a runtime runs a network list: each plugin gets
// `name` and `cniVersion` injected and, after the first, the previous plugin's result as `prevResult`; DEL runs the
// list backwards.
//
// The environment of a delegate is exactly CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME (danm's name for
// the interface), CNI_ARGS, CNI_PATH, PATH and DANM_SOCKET (so fakeipam finds the node daemon); nothing else of
// danm's environment leaks into plugins.
import { Effect, Schema } from "effect";
import { Fs } from "../../ports/filesystem.ts";
import { decodeText, Process, tail } from "../../ports/process.ts";
import { DelegateConfigError, DelegateError } from "../errors.ts";
import { CurrentCniMetrics, CurrentRequest } from "../metrics.ts";
import { compareVersions, type ValidAttachment } from "../netconf.ts";
import { decodeResult, type Result } from "../protocol.ts";
import { forgetBinary, resolveBinary, staticForFakeIpam } from "./ipamhandoff.ts";
import { withDelegateSlot } from "./slots.ts";

export type PluginConfig = Readonly<Record<string, unknown>>;

/** A network list as danm runs it. Stored in the sandbox record, so DEL and CHECK run exactly what ADD ran. */
export const DelegateChain = Schema.Struct({
  /** Where it came from, for messages: "generated macvlan", a file path, "NetworkAttachmentDefinition ns/x". */
  source: Schema.String,
  name: Schema.String,
  cniVersion: Schema.String,
  plugins: Schema.Array(Schema.Record(Schema.String, Schema.Unknown)),
  disableCheck: Schema.Boolean,
  disableGC: Schema.Boolean,
});
export type DelegateChain = typeof DelegateChain.Type;

/** How a delegate is invoked for one interface of one sandbox. */
export interface Invocation {
  readonly containerId: string;
  readonly netns: string;
  readonly ifName: string;
  readonly cniArgs: string;
  readonly cniPath: ReadonlyArray<string>;
  /** PATH for the plugin. */
  readonly path: string;
  /** The daemon's socket, for fakeipam. */
  readonly socket: string;
  /** Per plugin execution. */
  readonly timeoutMs?: number;
}

// ---- Configurations -------------------------------------------------------------------------------------------

const PluginShape = Schema.Struct({
  type: Schema.String.check(Schema.isNonEmpty()),
  name: Schema.optionalKey(Schema.String),
  cniVersion: Schema.optionalKey(Schema.String),
});
const ListShape = Schema.Struct({
  name: Schema.optionalKey(Schema.String),
  cniVersion: Schema.optionalKey(Schema.String),
  plugins: Schema.Array(Schema.Record(Schema.String, Schema.Unknown)).check(Schema.isMinLength(1)),
  disableCheck: Schema.optionalKey(Schema.Boolean),
  disableGC: Schema.optionalKey(Schema.Boolean),
});
const JsonObject = Schema.Record(Schema.String, Schema.Unknown);

/** A plugin `type` names a binary in CNI_PATH: a plain file name, never a path (NAD configs are user input). */
const validType = (t: string) => /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(t);

/**
 * Parses a single-plugin config or a network list. `fallbackName` names a config without `name`;
 * `defaultVersion` is used when the config has no cniVersion; `fallbackType` types a .conf without `type`.
 */
export const parseDelegateConfig = (
  text: string,
  source: string,
  defaults: { readonly name: string; readonly cniVersion: string; readonly type?: string },
): Effect.Effect<DelegateChain, DelegateConfigError> =>
  Effect.gen(function* () {
    const bad = (reason: string) => new DelegateConfigError({ source, reason });
    const json = yield* Effect.try({ try: (): unknown => JSON.parse(text), catch: (e) => bad(`not JSON: ${e}`) });
    const obj = yield* Schema.decodeUnknownEffect(JsonObject)(json).pipe(
      Effect.mapError(() => bad("not a JSON object")),
    );
    if ("plugins" in obj) {
      const list = yield* Schema.decodeUnknownEffect(ListShape)(obj).pipe(Effect.mapError((e) => bad(e.message)));
      const name = list.name || defaults.name, cniVersion = list.cniVersion || defaults.cniVersion;
      const plugins: PluginConfig[] = [];
      for (const [i, p] of list.plugins.entries()) {
        const shape = yield* Schema.decodeUnknownEffect(PluginShape)(p).pipe(
          Effect.mapError((e) => bad(`plugins[${i}]: ${e.message}`)),
        );
        if (!validType(shape.type)) return yield* bad(`plugins[${i}]: type "${shape.type}" is not a plugin name`);
        plugins.push({ ...p, name, cniVersion });
      }
      return {
        source,
        name,
        cniVersion,
        plugins,
        disableCheck: list.disableCheck ?? false,
        disableGC: list.disableGC ?? false,
      };
    }
    const withType = obj.type === undefined && defaults.type ? { ...obj, type: defaults.type } : obj;
    const shape = yield* Schema.decodeUnknownEffect(PluginShape)(withType).pipe(
      Effect.mapError((e) => bad(e.message)),
    );
    if (!validType(shape.type)) return yield* bad(`type "${shape.type}" is not a plugin name`);
    const name = shape.name || defaults.name, cniVersion = shape.cniVersion || defaults.cniVersion;
    return {
      source,
      name,
      cniVersion,
      plugins: [{ ...withType, name, cniVersion }],
      disableCheck: false,
      disableGC: false,
    };
  });

/** `<cniDir>/<networkId>.conf`, else `.conflist` (DANM read only the former, #224). */
export const loadStaticConfig = (
  cniDir: string,
  networkId: string,
  networkType: string,
  cniVersion: string,
): Effect.Effect<DelegateChain, DelegateConfigError, Fs> =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    if (!validType(networkId)) {
      return yield* new DelegateConfigError({
        source: `${cniDir}/${networkId}.conf`,
        reason: `NetworkID "${networkId}" cannot name a configuration file`,
      });
    }
    for (const ext of [".conf", ".conflist"]) {
      const path = `${cniDir}/${networkId}${ext}`;
      const text = yield* fs.readText(path).pipe(
        Effect.map((t): string | undefined => t),
        Effect.catchTag("FsNotFound", () => Effect.succeed(undefined)),
        Effect.mapError((e) => new DelegateConfigError({ source: path, reason: e.message })),
      );
      if (text !== undefined) {
        return yield* parseDelegateConfig(text, path, { name: networkId, cniVersion, type: networkType });
      }
    }
    return yield* new DelegateConfigError({
      source: `${cniDir}/${networkId}.conf`,
      reason: `neither ${networkId}.conf nor ${networkId}.conflist exists in ${cniDir}`,
    });
  });

/** A chain of one plugin (the configs backends generate). */
export const singlePluginChain = (source: string, plugin: PluginConfig): DelegateChain => ({
  source,
  name: String(plugin.name),
  cniVersion: String(plugin.cniVersion),
  plugins: [plugin],
  disableCheck: false,
  disableGC: false,
});

/**
 * Puts danm's fakeipam section into the list: replacing the `ipam` of every plugin that has one, else on the first
 * plugin (the one creating the interface).
 */
export function withIpam(chain: DelegateChain, ipam: Record<string, unknown>): DelegateChain {
  const has = chain.plugins.some((p) => "ipam" in p);
  return {
    ...chain,
    plugins: chain.plugins.map((p, i) => ("ipam" in p || (!has && i === 0) ? { ...p, ipam } : p)),
  };
}

/** Adds NPWG `cni-args` as `args.cni` to every plugin (Multus' convention). */
export function withCniArgs(chain: DelegateChain, cniArgs: Readonly<Record<string, unknown>>): DelegateChain {
  return {
    ...chain,
    plugins: chain.plugins.map((p) => {
      const args = typeof p.args === "object" && p.args !== null ? p.args as Record<string, unknown> : {};
      const cni = typeof args.cni === "object" && args.cni !== null ? args.cni as Record<string, unknown> : {};
      return { ...p, args: { ...args, cni: { ...cni, ...cniArgs } } };
    }),
  };
}

// ---- Execution ------------------------------------------------------------------------------------------------

const ErrorOutput = Schema.Struct({
  code: Schema.optionalKey(Schema.Number),
  msg: Schema.optionalKey(Schema.String),
  details: Schema.optionalKey(Schema.String),
});

const pluginLabel = (plugin: PluginConfig) => String(plugin.type);

type PluginCommand = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS";
/** GC and STATUS name no sandbox or interface. */
type PluginInvocation = Omit<Invocation, "ifName" | "containerId" | "netns"> & {
  readonly ifName?: string;
  readonly containerId?: string;
  readonly netns?: string;
};

/**
 * Runs one plugin, in one of the node daemon's delegate slots (slots.ts); the parsed stdout on success (undefined when
 * it printed nothing). Its time goes into the delegate histogram and the current request's delegate time
 * (core/cni/metrics.ts).
 */
export const execPlugin = (
  plugin: PluginConfig,
  command: PluginCommand,
  inv: PluginInvocation,
): Effect.Effect<unknown, DelegateError, Process | Fs> =>
  withDelegateSlot(timedPlugin(plugin, command, inv), { plugin: pluginLabel(plugin), command });

const timedPlugin = (
  plugin: PluginConfig,
  command: PluginCommand,
  inv: PluginInvocation,
): Effect.Effect<unknown, DelegateError, Process | Fs> =>
  Effect.gen(function* () {
    const metrics = yield* CurrentCniMetrics;
    const request = yield* CurrentRequest;
    const started = performance.now();
    return yield* runPlugin(plugin, command, inv).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          const ended = performance.now();
          request?.delegateRan(started, ended);
          metrics?.delegates.observe((ended - started) / 1000, {
            command,
            plugin: validType(pluginLabel(plugin)) ? pluginLabel(plugin) : "invalid",
            result: exit._tag === "Success" ? "success" : "error",
          });
        })
      ),
    );
  });

const runPlugin = (
  plugin: PluginConfig,
  command: PluginCommand,
  inv: PluginInvocation,
): Effect.Effect<unknown, DelegateError, Process | Fs> =>
  Effect.gen(function* () {
    const type = pluginLabel(plugin);
    const fail = (reason: string, code?: number) =>
      new DelegateError({ plugin: type, command, reason, ...(code === undefined ? {} : { code }) });
    if (!validType(type)) return yield* fail(`"${type}" is not a plugin name`);
    const binary = yield* resolveBinary(type, inv.cniPath);
    if (binary === undefined) {
      return yield* fail(`no plugin binary "${type}" in CNI_PATH ${inv.cniPath.join(":") || "(empty)"}`);
    }
    const env: Record<string, string> = {
      CNI_COMMAND: command,
      CNI_PATH: inv.cniPath.join(":"),
      PATH: inv.path,
      DANM_SOCKET: inv.socket,
      ...(inv.containerId ? { CNI_CONTAINERID: inv.containerId } : {}),
      ...(inv.netns !== undefined ? { CNI_NETNS: inv.netns } : {}),
      ...(inv.ifName ? { CNI_IFNAME: inv.ifName } : {}),
      ...(inv.cniArgs ? { CNI_ARGS: inv.cniArgs } : {}),
    };
    const process = yield* Process;
    const out = yield* process.exec({
      argv: [binary],
      env,
      stdin: JSON.stringify(plugin),
      ...(inv.timeoutMs === undefined ? {} : { timeoutMs: inv.timeoutMs }),
    }).pipe(
      Effect.tapError(() => forgetBinary(type, inv.cniPath)),
      Effect.mapError((e) => fail(e.message)),
    );
    const stdout = decodeText(out.stdout).trim();
    let parsed: unknown = undefined;
    if (stdout !== "") {
      try {
        parsed = JSON.parse(stdout);
      } catch {
        if (out.code === 0) return yield* fail(`printed something that is not JSON: ${stdout.slice(0, 200)}`);
      }
    }
    if (out.code !== 0 || out.signal) {
      const e = Schema.decodeUnknownOption(ErrorOutput)(parsed);
      const reason = e._tag === "Some" && (e.value.msg || e.value.details)
        ? [e.value.msg, e.value.details].filter(Boolean).join(": ")
        : tail(out.stderr, 500) || stdout.slice(0, 500) || `exited with ${out.signal ?? out.code}`;
      return yield* fail(reason, e._tag === "Some" ? e.value.code : undefined);
    }
    return parsed;
  });

/** ADD through the list: the final raw result and its decoded form. */
export const chainAdd = (chain: DelegateChain, inv: Invocation) =>
  Effect.gen(function* () {
    let prev: unknown = undefined;
    for (const plugin of chain.plugins) {
      const conf = prev === undefined ? plugin : { ...plugin, prevResult: prev };
      const out = yield* execPlugin(yield* staticForFakeIpam(conf, inv), "ADD", inv);
      // A plugin printing nothing passes the previous result on (DANM: empty output is an empty success).
      if (out !== undefined) prev = out;
    }
    const result: Result = yield* decodeResult(prev).pipe(
      Effect.mapError((e) =>
        new DelegateError({ plugin: chain.source, command: "ADD", reason: `unreadable result: ${e.message}` })
      ),
    );
    return { raw: prev, result };
  });

/**
 * fakeipam's DEL does nothing, so a plugin need not exec it: the section is dropped for DEL (one process start less
 * per interface), except where the plugin derives cleanup from its IPAM (ipMasq rules are found through it).
 */
const withoutFakeIpam = (plugin: PluginConfig): PluginConfig => {
  const ipam = plugin.ipam as { type?: unknown } | undefined;
  if (ipam?.type !== "fakeipam" || plugin.ipMasq === true) return plugin;
  const { ipam: _drop, ...rest } = plugin;
  return rest;
};

/** DEL through the list, last plugin first; every plugin runs even when one fails (nothing is left half-done). */
export const chainDel = (chain: DelegateChain, inv: Invocation, prevResult?: unknown) =>
  Effect.gen(function* () {
    const errors: DelegateError[] = [];
    for (const original of [...chain.plugins].reverse()) {
      const plugin = withoutFakeIpam(original);
      const conf = prevResult === undefined || compareVersions(chain.cniVersion, "0.4.0") < 0
        ? plugin
        : { ...plugin, prevResult };
      const r = yield* Effect.result(execPlugin(conf, "DEL", inv));
      if (r._tag === "Failure") errors.push(r.failure);
    }
    if (errors.length > 0) {
      return yield* new DelegateError({
        plugin: chain.source,
        command: "DEL",
        reason: errors.map((e) => e.message).join("; "),
      });
    }
  });

/** CHECK through the list (skipped below 0.4.0 or with disableCheck, as libcni does). */
export const chainCheck = (chain: DelegateChain, inv: Invocation, prevResult: unknown) =>
  Effect.gen(function* () {
    if (chain.disableCheck || compareVersions(chain.cniVersion, "0.4.0") < 0) return;
    for (const plugin of chain.plugins) {
      yield* execPlugin({ ...plugin, ...(prevResult === undefined ? {} : { prevResult }) }, "CHECK", inv);
    }
  });

/** GC through the list (only 1.1.0 lists without disableGC). */
export const chainGc = (
  chain: DelegateChain,
  valid: ReadonlyArray<ValidAttachment>,
  inv: Pick<Invocation, "cniPath" | "path" | "socket" | "timeoutMs">,
) =>
  Effect.gen(function* () {
    if (chain.disableGC || compareVersions(chain.cniVersion, "1.1.0") < 0) return false;
    for (const plugin of chain.plugins) {
      yield* execPlugin({ ...plugin, "cni.dev/valid-attachments": valid }, "GC", { ...inv, cniArgs: "" });
    }
    return true;
  });
