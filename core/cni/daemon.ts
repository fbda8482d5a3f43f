// The node daemon's request handler: one request of the thin `danm` or `fakeipam` client ({program, env, stdin},
// adapters/cniclient/client.ts) → the answer it relays to the runtime ({code, stdout, stderr}). Every input is
// decoded here; every failure becomes CNI error JSON on stdout with a non-zero code, and no failure, not even a
// defect, escapes to the listener.
import { Cause, Effect, LogLevel, Schema } from "effect";
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
  parseCniArgs,
  supportedVersions,
  versionInfo,
} from "./protocol.ts";
import { CniCommands, CurrentCniMetrics, CurrentRequest, RequestObservation } from "./metrics.ts";
import { redeemTicket } from "./attach/ipamhandoff.ts";
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
      addresses = yield* redeemTicket(ticket).pipe(
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

/**
 * Requests that never wait behind others: fakeipam calls come from delegates of ADDs already running, and VERSION
 * (which thin clients answer themselves) is the readiness probe's, which must not be refused as busy.
 */
export const bypassesGate = (raw: unknown): boolean =>
  typeof raw === "object" && raw !== null && (
    ("program" in raw && raw.program === "fakeipam") ||
    ("env" in raw && typeof raw.env === "object" && raw.env !== null && "CNI_COMMAND" in raw.env &&
      raw.env.CNI_COMMAND === "VERSION")
  );

/** The error a failed request answers with: its CniError, or an internal error naming the defect. */
const failureOf = (program: string, command: string, cause: Cause.Cause<unknown>) =>
  Effect.gen(function* () {
    const failure = cause.reasons.find((r) => r._tag === "Fail");
    if (failure && failure.error instanceof CniError) return failure.error;
    const e = new CniError({
      code: ErrorCode.ioFailure,
      msg: `danm node daemon: internal error in ${program} ${command}`,
      details: failure
        ? String((failure.error as { message?: unknown }).message ?? failure.error)
        : Cause.pretty(cause),
    });
    yield* Effect.logError(e.message, cause);
    return e;
  });

const knownCommands: ReadonlySet<string> = new Set([...CniCommands, "VERSION"]);
const commandOf = (env: Readonly<Record<string, string>>) =>
  knownCommands.has(env.CNI_COMMAND ?? "") ? env.CNI_COMMAND! : "unknown";

/** The one log line of a call: what the runtime asked (pod, sandbox) and what came of it. */
const logCall = (
  program: string,
  env: Readonly<Record<string, string>>,
  outcome: {
    readonly result: "success" | "error" | "busy";
    readonly ms: number;
    readonly observation?: RequestObservation;
    readonly error?: CniError;
  },
) =>
  Effect.gen(function* () {
    const command = commandOf(env);
    const quiet = outcome.result === "success" &&
      (program !== "danm" || command === "STATUS" || command === "VERSION");
    // Most calls at debug level are fakeipam's, on every delegated ADD: not even their line is built unless shown.
    if (quiet && !(yield* LogLevel.isEnabled("Debug"))) return;
    yield* callLine(program, command, env, outcome, quiet);
  });

const callLine = (
  program: string,
  command: string,
  env: Readonly<Record<string, string>>,
  outcome: Parameters<typeof logCall>[2],
  quiet: boolean,
) => {
  const args = parseCniArgs(env.CNI_ARGS);
  const pod = args instanceof CniError ? undefined : args;
  const networks = outcome.observation?.networks ?? [];
  const line = Effect.annotateLogs({
    plugin: program,
    command,
    result: outcome.result,
    duration_ms: Math.round(outcome.ms * 10) / 10,
    ...(pod?.K8S_POD_NAMESPACE && pod.K8S_POD_NAME ? { pod: `${pod.K8S_POD_NAMESPACE}/${pod.K8S_POD_NAME}` } : {}),
    ...(env.CNI_CONTAINERID ? { sandbox: env.CNI_CONTAINERID } : {}),
    ...(env.CNI_NETNS ? { netns: env.CNI_NETNS } : {}),
    ...(networks.length > 0 ? { networks: networks.join(", ") } : {}),
    ...outcome.observation?.details,
    ...(outcome.error ? { error: outcome.error.message, cni_code: outcome.error.code } : {}),
  });
  const message = `${program} ${command} ${
    outcome.result === "success" ? "done" : outcome.result === "busy" ? "refused: busy" : "failed"
  }`;
  return (outcome.result !== "success"
    ? Effect.logWarning(message)
    : quiet
    ? Effect.logDebug(message)
    : Effect.logInfo(message)).pipe(line);
};

/**
 * A request the gate answered busy (queue full, shutting down): logged and counted like the calls that ran. Never
 * fails; `raw` may be anything.
 */
export const refusedBusy = (raw: unknown, reason: string) =>
  Effect.gen(function* () {
    const decoded = Schema.decodeUnknownExit(DaemonRequest)(raw);
    if (decoded._tag === "Failure") return;
    const req = decoded.value;
    (yield* CurrentCniMetrics)?.rejected.inc({ command: commandOf(req.env) });
    yield* logCall(req.program, req.env, {
      result: "busy",
      ms: 0,
      error: new CniError({ code: ErrorCode.tryAgainLater, msg: reason }),
    });
  });

/**
 * Handles one decoded-or-not request; never fails. A call of the danm plugin is timed into the request histograms
 * (its own time apart from its delegates') and logged once, with its outcome, duration, pod, sandbox and networks;
 * a failure with its full reason. Successful STATUS and VERSION calls, which runtimes make all the time, and
 * fakeipam's calls (part of a delegate's ADD) are logged at debug level.
 */
export const handleRequest = (raw: unknown) =>
  Effect.gen(function* () {
    const decoded = Schema.decodeUnknownExit(DaemonRequest)(raw);
    if (decoded._tag === "Failure") {
      const e = new CniError({ code: ErrorCode.decodeFailure, msg: "malformed request to the danm node daemon" });
      yield* Effect.logWarning(e.msg);
      return { code: 1, stdout: encodeError(e, latestVersion), stderr: "" } satisfies DaemonResponse;
    }
    const req = decoded.value;
    const version = requestedVersion(req.stdin);
    const command = commandOf(req.env);
    const metrics = yield* CurrentCniMetrics;
    const observation = new RequestObservation();
    const isDanm = req.program === "danm";
    const started = performance.now();
    if (isDanm) metrics?.inFlight.add(1, { command });
    const exit = yield* (isDanm ? danmCommand(req.env, req.stdin) : fakeIpam(req.env, req.stdin)).pipe(
      Effect.provideService(CurrentRequest, observation),
      Effect.ensuring(Effect.sync(() => isDanm && metrics?.inFlight.add(-1, { command }))),
      Effect.exit,
    );
    const ms = performance.now() - started;
    const error = exit._tag === "Failure" ? yield* failureOf(req.program, command, exit.cause) : undefined;
    const result = error ? "error" : "success";
    if (isDanm && command !== "unknown" && command !== "VERSION") {
      metrics?.requests.observe(ms / 1000, { command, result });
      metrics?.ownTime.observe(Math.max(0, ms - observation.delegateMs()) / 1000, { command, result });
    }
    yield* logCall(req.program, req.env, { result, ms, observation, ...(error ? { error } : {}) });
    if (exit._tag === "Success") return exit.value;
    return { code: 1, stdout: encodeError(error!, version), stderr: "" } satisfies DaemonResponse;
  });
