// The CNI configuration file `/etc/cni/net.d/00-danm.conf` (spec §1.2), as the runtime hands it to the danm CNI
// binary on stdin.
//
// Unknown keys are ignored, as DANM's non-strict unmarshal does: DANM's own sample carries `*_comment` keys,
// netwatcher-era configs carry `master`/`vlan`/`vxlan`, and the runtime adds `runtimeConfig`, `prevResult`, `args`.
import { Effect, Schema, SchemaParser } from "effect";
import { defaultDaemonSocket } from "../cni/versions.ts";
import { problemsOf, renderProblems } from "./formats.ts";

export const DefaultCniDir = "/etc/cni/net.d";
/** Where the node daemon listens unless the config says otherwise (the thin client's default too). */
export const DefaultDaemonSocket = defaultDaemonSocket;
/** `namingScheme` value that makes interface names exactly `container_prefix` (spec §4.5). */
export const LegacyNamingScheme = "legacy";

export const DanmCniConfig = Schema.Struct({
  cniVersion: Schema.String,
  name: Schema.String,
  type: Schema.Literal("danm"),
  /**
   * Kubeconfig for the API. DANM needed it on every node; danm's binary talks to the node daemon instead, which
   * holds the credentials, so it is optional here.
   */
  kubeconfig: Schema.optionalKey(Schema.String),
  /** Where static delegates' `<NetworkID>.conf` files are looked up. */
  cniDir: Schema.String.pipe(Schema.withDecodingDefaultKey(Effect.succeed(DefaultCniDir))),
  /** "legacy" or anything else (= prefix + sequence number). */
  namingScheme: Schema.String.pipe(Schema.withDecodingDefaultKey(Effect.succeed(""))),
  /** Unix socket of the danm node daemon the CNI binary delegates to; default {@link DefaultDaemonSocket}. */
  daemonSocket: Schema.String.pipe(Schema.withDecodingDefaultKey(Effect.succeed(DefaultDaemonSocket))),
});
export type DanmCniConfig = typeof DanmCniConfig.Type;

export class CniConfigError extends Schema.TaggedError<CniConfigError>()("CniConfigError", {
  source: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `reading the danm CNI configuration ${this.source}: ${this.reason}`;
  }
}

/** Decodes an already parsed configuration object. `source` names it in errors (a path, or "stdin"). */
export function decodeCniConfig(input: unknown, source = "stdin"): Effect.Effect<DanmCniConfig, CniConfigError> {
  return SchemaParser.decodeUnknownEffect(DanmCniConfig)(input, { errors: "all", reportInput: true }).pipe(
    Effect.mapError((issue) => new CniConfigError({ source, reason: renderProblems(problemsOf(issue)) })),
  );
}

/** Parses and decodes the JSON text of the file. */
export function parseCniConfig(text: string, source = "stdin"): Effect.Effect<DanmCniConfig, CniConfigError> {
  return Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (e) => new CniConfigError({ source, reason: `not valid JSON: ${(e as Error).message}` }),
  }).pipe(Effect.flatMap((json) => decodeCniConfig(json, source)));
}

export function isLegacyNaming(config: DanmCniConfig): boolean {
  return config.namingScheme === LegacyNamingScheme;
}
