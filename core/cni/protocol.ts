// The CNI protocol (spec 0.3.1, 0.4.0, 1.0.0, 1.1.0): environment, results per version, errors.
//
// Internally danm works with one version-independent Result; `encodeResult` renders it in the version the
// runtime asked for and `decodeResult` reads a delegate's output of any version (including the pre-0.3
// `ip4`/`ip6` shape) back into it.
import { Effect, Schema } from "effect";

import { latestVersion, supportedVersions } from "./versions.ts";
export { type CniVersion, latestVersion, supportedVersions } from "./versions.ts";

export const Commands = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] as const;
export type Command = typeof Commands[number];

/** CNI error codes (spec "Error" section); 100+ are danm's own. */
export const ErrorCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidNetworkConfig: 7,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  limitedConnectivity: 51,
  /** danm: one or more attachments failed (details name each network). */
  attachmentFailed: 100,
  /** danm: the API server could not be reached or refused a request. */
  apiFailure: 101,
  /** danm: IP address management refused the request. */
  ipamFailure: 102,
} as const;

export class CniError extends Schema.TaggedError<CniError>()("CniError", {
  code: Schema.Number,
  msg: Schema.String,
  details: Schema.optionalKey(Schema.String),
}) {
  override get message() {
    return this.details ? `${this.msg}: ${this.details}` : this.msg;
  }
}

export const encodeError = (e: CniError, version: string) =>
  JSON.stringify({ cniVersion: version, code: e.code, msg: e.msg, ...(e.details ? { details: e.details } : {}) });

// --- Environment -------------------------------------------------------------------------------------------

const NonEmpty = Schema.String.check(Schema.isNonEmpty());

/** What the runtime puts in the environment; which variables are required depends on the command. */
export const CniEnv = Schema.Struct({
  CNI_COMMAND: Schema.Literals(Commands),
  CNI_CONTAINERID: Schema.optionalKey(NonEmpty),
  CNI_NETNS: Schema.optionalKey(Schema.String),
  CNI_IFNAME: Schema.optionalKey(NonEmpty),
  CNI_ARGS: Schema.optionalKey(Schema.String),
  CNI_PATH: Schema.optionalKey(Schema.String),
});
export type CniEnv = typeof CniEnv.Type;

export interface Invocation {
  readonly command: Command;
  readonly containerId: string;
  readonly netns: string;
  readonly ifname: string;
  /** CNI_ARGS as key/value pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, K8S_POD_INFRA_CONTAINER_ID …). */
  readonly args: Readonly<Record<string, string>>;
  readonly path: ReadonlyArray<string>;
}

/** Parses "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;…". */
export function parseCniArgs(text: string | undefined): Record<string, string> | CniError {
  const out: Record<string, string> = {};
  for (const part of (text ?? "").split(";")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) {
      return new CniError({
        code: ErrorCode.invalidEnvironment,
        msg: "invalid CNI_ARGS",
        details: `"${part}" is not KEY=VALUE`,
      });
    }
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** Decodes the environment; the variables each command needs (spec "Parameters") must be present. */
export const decodeInvocation = (env: Readonly<Record<string, string | undefined>>) =>
  Effect.gen(function* () {
    const e = yield* Schema.decodeUnknownEffect(CniEnv)(
      Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith("CNI_") && v !== undefined)),
    ).pipe(
      Effect.mapError((err) =>
        new CniError({ code: ErrorCode.invalidEnvironment, msg: "invalid CNI environment", details: err.message })
      ),
    );
    const needs: Record<Command, ReadonlyArray<keyof CniEnv>> = {
      ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
      DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
      CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
      GC: [],
      STATUS: [],
      VERSION: [],
    };
    const missing = needs[e.CNI_COMMAND].filter((k) => !e[k]);
    if (missing.length > 0) {
      return yield* new CniError({
        code: ErrorCode.invalidEnvironment,
        msg: `${e.CNI_COMMAND} needs ${missing.join(", ")}`,
      });
    }
    const args = parseCniArgs(e.CNI_ARGS);
    if (args instanceof CniError) return yield* args;
    const inv: Invocation = {
      command: e.CNI_COMMAND,
      containerId: e.CNI_CONTAINERID ?? "",
      netns: e.CNI_NETNS ?? "",
      ifname: e.CNI_IFNAME ?? "",
      args,
      path: (e.CNI_PATH ?? "").split(":").filter(Boolean),
    };
    return inv;
  });

// --- Results -----------------------------------------------------------------------------------------------

export interface ResultInterface {
  readonly name: string;
  readonly mac?: string;
  /** The netns path for interfaces inside the container; absent for host-side interfaces. */
  readonly sandbox?: string;
  readonly mtu?: number;
  readonly pciID?: string;
}

export interface ResultIp {
  /** Address with prefix, e.g. "10.0.0.5/24". */
  readonly address: string;
  readonly gateway?: string;
  /** Index into `interfaces`. */
  readonly interface?: number;
}

export interface ResultRoute {
  readonly dst: string;
  readonly gw?: string;
  readonly mtu?: number;
  readonly table?: number;
  readonly scope?: number;
  readonly priority?: number;
}

export interface Dns {
  readonly nameservers?: ReadonlyArray<string>;
  readonly domain?: string;
  readonly search?: ReadonlyArray<string>;
  readonly options?: ReadonlyArray<string>;
}

export interface Result {
  readonly interfaces: ReadonlyArray<ResultInterface>;
  readonly ips: ReadonlyArray<ResultIp>;
  readonly routes: ReadonlyArray<ResultRoute>;
  readonly dns?: Dns;
}

export const emptyResult: Result = { interfaces: [], ips: [], routes: [] };

const isV4 = (cidr: string) => !cidr.includes(":");
const before1 = (v: string) => v.startsWith("0.");

/** Renders a result in the wire format of `version`. */
export function encodeResult(r: Result, version: string): Record<string, unknown> {
  const legacy = before1(version);
  const v11 = version === "1.1.0";
  return {
    cniVersion: version,
    interfaces: r.interfaces.map((i) => ({
      name: i.name,
      ...(i.mac ? { mac: i.mac } : {}),
      ...(i.sandbox !== undefined ? { sandbox: i.sandbox } : {}),
      ...(v11 && i.mtu ? { mtu: i.mtu } : {}),
      ...(v11 && i.pciID ? { pciID: i.pciID } : {}),
    })),
    ips: r.ips.map((ip) => ({
      ...(legacy ? { version: isV4(ip.address) ? "4" : "6" } : {}),
      address: ip.address,
      ...(ip.gateway ? { gateway: ip.gateway } : {}),
      ...(ip.interface !== undefined ? { interface: ip.interface } : {}),
    })),
    routes: r.routes.map((rt) => ({
      dst: rt.dst,
      ...(rt.gw ? { gw: rt.gw } : {}),
      ...(v11 && rt.mtu !== undefined ? { mtu: rt.mtu } : {}),
      ...(v11 && rt.table !== undefined ? { table: rt.table } : {}),
      ...(v11 && rt.scope !== undefined ? { scope: rt.scope } : {}),
      ...(v11 && rt.priority !== undefined ? { priority: rt.priority } : {}),
    })),
    dns: r.dns ?? {},
  };
}

const Opt = Schema.optionalKey;
const DnsSchema = Schema.Struct({
  nameservers: Opt(Schema.Array(Schema.String)),
  domain: Opt(Schema.String),
  search: Opt(Schema.Array(Schema.String)),
  options: Opt(Schema.Array(Schema.String)),
});
const RouteSchema = Schema.Struct({
  dst: Schema.String,
  gw: Opt(Schema.String),
  mtu: Opt(Schema.Number),
  table: Opt(Schema.Number),
  scope: Opt(Schema.Number),
  priority: Opt(Schema.Number),
});
/** 0.3.0 and later. */
const CurrentResult = Schema.Struct({
  cniVersion: Opt(Schema.String),
  interfaces: Opt(Schema.Array(Schema.Struct({
    name: Schema.String,
    mac: Opt(Schema.String),
    sandbox: Opt(Schema.String),
    mtu: Opt(Schema.Number),
    pciID: Opt(Schema.String),
  }))),
  ips: Opt(Schema.Array(Schema.Struct({
    version: Opt(Schema.String),
    address: Schema.String,
    gateway: Opt(Schema.String),
    interface: Opt(Schema.Number),
  }))),
  routes: Opt(Schema.Array(RouteSchema)),
  dns: Opt(DnsSchema),
});
/** 0.1.0 / 0.2.0. */
const LegacyResult = Schema.Struct({
  cniVersion: Opt(Schema.String),
  ip4: Opt(Schema.Struct({ ip: Schema.String, gateway: Opt(Schema.String), routes: Opt(Schema.Array(RouteSchema)) })),
  ip6: Opt(Schema.Struct({ ip: Schema.String, gateway: Opt(Schema.String), routes: Opt(Schema.Array(RouteSchema)) })),
  dns: Opt(DnsSchema),
});

/** Reads a plugin's result of any version (empty output is an empty result, as DANM treats it). */
export const decodeResult = (raw: unknown) =>
  Effect.gen(function* () {
    if (raw === undefined || raw === null || (typeof raw === "object" && Object.keys(raw).length === 0)) {
      return emptyResult;
    }
    // Only a string counts: String() of a JSON object whose "toString" is not a function throws.
    const version = typeof raw === "object" && raw !== null && "cniVersion" in raw && typeof raw.cniVersion === "string"
      ? raw.cniVersion
      : "";
    const fail = (err: { message: string }) =>
      new CniError({ code: ErrorCode.decodeFailure, msg: "cannot decode a plugin result", details: err.message });
    if (version === "0.1.0" || version === "0.2.0" || (typeof raw === "object" && ("ip4" in raw! || "ip6" in raw!))) {
      const l = yield* Schema.decodeUnknownEffect(LegacyResult)(raw).pipe(Effect.mapError(fail));
      const ips: ResultIp[] = [], routes: ResultRoute[] = [];
      for (const fam of [l.ip4, l.ip6]) {
        if (!fam) continue;
        ips.push({ address: fam.ip, ...(fam.gateway ? { gateway: fam.gateway } : {}) });
        routes.push(...(fam.routes ?? []));
      }
      const legacy: Result = { interfaces: [], ips, routes, ...(l.dns ? { dns: l.dns } : {}) };
      return legacy;
    }
    const c = yield* Schema.decodeUnknownEffect(CurrentResult)(raw).pipe(Effect.mapError(fail));
    const current: Result = {
      interfaces: c.interfaces ?? [],
      ips: (c.ips ?? []).map(({ version: _v, ...ip }) => ip),
      routes: c.routes ?? [],
      ...(c.dns ? { dns: c.dns } : {}),
    };
    return current;
  });

/** The VERSION answer. */
export const versionInfo = (requested: string | undefined) => ({
  cniVersion: requested && (supportedVersions as ReadonlyArray<string>).includes(requested) ? requested : latestVersion,
  supportedVersions: [...supportedVersions],
});

/** Concatenates results, re-basing every interface index (`ips[].interface`) into the merged list. */
export function mergeResults(parts: ReadonlyArray<Result>): Result {
  const interfaces: ResultInterface[] = [], ips: ResultIp[] = [], routes: ResultRoute[] = [];
  let dns: Dns | undefined;
  for (const p of parts) {
    const base = interfaces.length;
    interfaces.push(...p.interfaces);
    ips.push(...p.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + base })));
    routes.push(...p.routes);
    dns ??= p.dns;
  }
  return { interfaces, ips, routes, ...(dns ? { dns } : {}) };
}
