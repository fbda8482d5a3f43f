// The node daemon's request handler: one request of the thin `danm` or `fakeipam` client ({program, env, stdin},
// adapters/cniclient/client.ts) → the answer it relays to the runtime ({code, stdout, stderr}). Every input is
// decoded here; every failure becomes CNI error JSON on stdout with a non-zero code, and no failure, not even a
// defect, escapes to the listener.
import { Cause, Effect, Schema } from "effect";
import { parseCidr } from "../net/ip.ts";
import { add } from "./add.ts";
import { check } from "./check.ts";
import { del } from "./del.ts";
import { gc } from "./gc.ts";
import { decodeNetConf } from "./netconf.ts";
import {
  CniError,
  decodeInvocation,
  encodeError,
  encodeResult,
  ErrorCode,
  latestVersion,
  supportedVersions,
  versionInfo,
} from "./protocol.ts";
import { CniRuntime } from "./runtime.ts";
import { status } from "./status.ts";

export const DaemonRequest = Schema.Struct({
  program: Schema.Literals(["danm", "fakeipam"]),
  env: Schema.Record(Schema.String, Schema.String),
  stdin: Schema.String,
});
export type DaemonRequest = typeof DaemonRequest.Type;

export interface DaemonResponse {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const ok = (stdout: unknown = undefined): DaemonResponse => ({
  code: 0,
  stdout: stdout === undefined ? "" : JSON.stringify(stdout),
  stderr: "",
});

/** The cniVersion stdin asks for, if it says one danm speaks (errors are rendered in it). */
function requestedVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === "string" && (supportedVersions as ReadonlyArray<string>).includes(v) ? v : latestVersion;
  } catch {
    return latestVersion;
  }
}

// ---- fakeipam (danm-spec §4.6) ----------------------------------------------------------------------------------

const FakeIpamConf = Schema.Struct({
  cniVersion: Schema.String,
  ipam: Schema.optionalKey(Schema.Struct({
    ips: Schema.optionalKey(Schema.Array(Schema.Struct({
      ipcidr: Schema.String,
      version: Schema.optionalKey(Schema.Union([Schema.Number, Schema.String])),
    }))),
    /** danm's own: the addresses are those of a reservation still being made (tickets.ts). */
    ticket: Schema.optionalKey(Schema.String),
  })),
});

/**
 * Echoes the addresses danm reserved as an IPAM result — given in the section (DANM's form), or those of a
 * ticket, once its reservation is made. DEL, CHECK, GC and STATUS have nothing to do.
 */
export const fakeIpam = (env: Readonly<Record<string, string>>, stdin: string) =>
  Effect.gen(function* () {
    const inv = yield* decodeInvocation(env);
    if (inv.command === "VERSION") return ok(versionInfo(requestedVersion(stdin)));
    if (inv.command !== "ADD") return ok();
    const json = yield* Effect.try({
      try: (): unknown => JSON.parse(stdin),
      catch: (e) =>
        new CniError({ code: ErrorCode.decodeFailure, msg: "fakeipam: stdin is not JSON", details: String(e) }),
    });
    const conf = yield* Schema.decodeUnknownEffect(FakeIpamConf)(json).pipe(
      Effect.mapError((e) =>
        new CniError({ code: ErrorCode.decodeFailure, msg: "fakeipam: invalid configuration", details: e.message })
      ),
    );
    if (!(supportedVersions as ReadonlyArray<string>).includes(conf.cniVersion)) {
      return yield* new CniError({
        code: ErrorCode.incompatibleVersion,
        msg: `fakeipam: CNI version ${conf.cniVersion} is not supported`,
        details: `supported: ${supportedVersions.join(", ")}`,
      });
    }
    let addresses: ReadonlyArray<string> = (conf.ipam?.ips ?? []).map((ip) => ip.ipcidr);
    const ticket = conf.ipam?.ticket;
    if (addresses.length === 0 && ticket !== undefined) {
      const rt = yield* CniRuntime;
      addresses = yield* rt.tickets.redeem(ticket, rt.config.attachTimeoutMs).pipe(
        Effect.mapError((reason) =>
          new CniError({ code: ErrorCode.tryAgainLater, msg: "fakeipam: no addresses reserved", details: reason })
        ),
      );
    }
    if (addresses.length === 0) {
      return yield* new CniError({ code: ErrorCode.invalidNetworkConfig, msg: "No IP was passed to fake IPAM" });
    }
    for (const address of addresses) {
      if (!parseCidr(address)) {
        return yield* new CniError({
          code: ErrorCode.invalidNetworkConfig,
          msg: `fakeipam: "${address}" is not an address with a prefix`,
        });
      }
    }
    return ok(
      encodeResult({ interfaces: [], ips: addresses.map((address) => ({ address })), routes: [] }, conf.cniVersion),
    );
  });

// ---- danm -------------------------------------------------------------------------------------------------------

export const danmCommand = (env: Readonly<Record<string, string>>, stdin: string) =>
  Effect.gen(function* () {
    const inv = yield* decodeInvocation(env);
    if (inv.command === "VERSION") return ok(versionInfo(requestedVersion(stdin)));
    const conf = yield* decodeNetConf(stdin, inv.command);
    switch (inv.command) {
      case "ADD":
        return ok(yield* add(inv, conf));
      case "DEL":
        yield* del(inv, conf.config.cniDir, conf.prevResult);
        return ok();
      case "CHECK":
        yield* check(inv, conf.prevResult);
        return ok();
      case "GC": {
        const report = yield* gc(inv, conf.validAttachments, conf.config.cniDir);
        if (report.problems.length > 0) {
          return yield* new CniError({
            code: ErrorCode.tryAgainLater,
            msg: `GC freed ${report.sandboxes.length} sandbox(es) but ${report.problems.length} step(s) failed`,
            details: report.problems.join("\n"),
          });
        }
        return ok();
      }
      case "STATUS":
        yield* status;
        return ok();
    }
  });

/** The answer to a request the daemon has no room for now: CNI error 11, which runtimes retry. */
export function busyResponse(raw: unknown, reason: string): DaemonResponse {
  const stdin = typeof raw === "object" && raw !== null && "stdin" in raw && typeof raw.stdin === "string"
    ? raw.stdin
    : "";
  const e = new CniError({ code: ErrorCode.tryAgainLater, msg: reason, details: "try again later" });
  return { code: 1, stdout: encodeError(e, requestedVersion(stdin)), stderr: "" };
}

/** fakeipam calls come from delegates of ADDs already running: they never wait behind other requests. */
export const isFakeIpamRequest = (raw: unknown): boolean =>
  typeof raw === "object" && raw !== null && "program" in raw && raw.program === "fakeipam";

/** Handles one decoded-or-not request; never fails. */
export const handleRequest = (raw: unknown) =>
  Effect.gen(function* () {
    const decoded = Schema.decodeUnknownExit(DaemonRequest)(raw);
    if (decoded._tag === "Failure") {
      const e = new CniError({ code: ErrorCode.decodeFailure, msg: "malformed request to the danm node daemon" });
      return { code: 1, stdout: encodeError(e, latestVersion), stderr: "" } satisfies DaemonResponse;
    }
    const req = decoded.value;
    const version = requestedVersion(req.stdin);
    const run = req.program === "danm" ? danmCommand(req.env, req.stdin) : fakeIpam(req.env, req.stdin);
    return yield* run.pipe(
      Effect.catchCause((cause) =>
        Effect.gen(function* () {
          const failure = cause.reasons.find((r) => r._tag === "Fail");
          const e = failure && failure.error instanceof CniError ? failure.error : new CniError({
            code: ErrorCode.ioFailure,
            msg: `danm node daemon: internal error in ${req.program} ${req.env.CNI_COMMAND ?? ""}`,
            details: failure
              ? String((failure.error as { message?: unknown }).message ?? failure.error)
              : Cause.pretty(cause),
          });
          if (!(failure && failure.error instanceof CniError)) yield* Effect.logError(e.message, cause);
          return { code: 1, stdout: encodeError(e, version), stderr: "" } satisfies DaemonResponse;
        })
      ),
    );
  });
