// What the runtime hands danm on stdin: 00-danm.conf (core/api/cniconfig.ts) plus the fields the runtime injects
// per command: `prevResult` (DEL/CHECK from 0.4.0), `cni.dev/valid-attachments` (GC, 1.1.0).
import { Effect, Schema, SchemaParser } from "effect";
import { type DanmCniConfig, decodeCniConfig } from "../api/cniconfig.ts";
import { problemsOf, renderProblems } from "../api/formats.ts";
import { CniError, type Command, ErrorCode, type Result, supportedVersions } from "./protocol.ts";
import { decodeResult } from "./protocol.ts";

export const ValidAttachment = Schema.Struct({ containerID: Schema.String, ifname: Schema.String });
export type ValidAttachment = typeof ValidAttachment.Type;

const RuntimeFields = Schema.Struct({
  prevResult: Schema.optionalKey(Schema.Unknown),
  "cni.dev/valid-attachments": Schema.optionalKey(Schema.Array(ValidAttachment)),
});

export interface DanmNetConf {
  readonly config: DanmCniConfig;
  readonly version: string;
  /** The decoded prevResult, when the runtime passed one. */
  readonly prevResult?: Result;
  readonly prevResultRaw?: unknown;
  readonly validAttachments?: ReadonlyArray<ValidAttachment>;
}

const invalid = (reason: string) =>
  new CniError({ code: ErrorCode.decodeFailure, msg: "cannot decode the network configuration", details: reason });

/** Parses stdin for `command`; the version must be one danm speaks and allow the command (as libcni's skel). */
export const decodeNetConf = (stdin: string, command: Command) =>
  Effect.gen(function* () {
    const json = yield* Effect.try({ try: (): unknown => JSON.parse(stdin), catch: (e) => invalid(String(e)) });
    const config = yield* decodeCniConfig(json).pipe(
      Effect.mapError((e) =>
        new CniError({
          code: ErrorCode.invalidNetworkConfig,
          msg: "invalid danm network configuration",
          details: e.reason,
        })
      ),
    );
    const version = config.cniVersion;
    if (!(supportedVersions as ReadonlyArray<string>).includes(version)) {
      return yield* new CniError({
        code: ErrorCode.incompatibleVersion,
        msg: `cniVersion "${version}" is not supported`,
        details: `danm speaks ${supportedVersions.join(", ")}`,
      });
    }
    const minimum = command === "CHECK" ? "0.4.0" : command === "GC" || command === "STATUS" ? "1.1.0" : undefined;
    if (minimum !== undefined && compareVersions(version, minimum) < 0) {
      return yield* new CniError({
        code: ErrorCode.incompatibleVersion,
        msg: `config version does not allow ${command}`,
        details: `${command} needs cniVersion ${minimum} or later, the configuration has ${version}`,
      });
    }
    const extra = yield* SchemaParser.decodeUnknownEffect(RuntimeFields)(json, { errors: "all" }).pipe(
      Effect.mapError((issue) => invalid(renderProblems(problemsOf(issue)))),
    );
    const prevResult = extra.prevResult === undefined ? undefined : yield* decodeResult(extra.prevResult).pipe(
      Effect.mapError((e) => new CniError({ ...e, msg: `prevResult: ${e.msg}` })),
    );
    const out: DanmNetConf = {
      config,
      version,
      ...(prevResult === undefined ? {} : { prevResult, prevResultRaw: extra.prevResult }),
      ...(extra["cni.dev/valid-attachments"] ? { validAttachments: extra["cni.dev/valid-attachments"] } : {}),
    };
    return out;
  });

/** Orders "a.b.c" versions numerically. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number), pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}
