// Logs of the long-running binaries: one JSON object a line by default when stdout is not a terminal (a container's
// log, read by Loki, Elasticsearch, `kubectl logs | jq`), logfmt-style text on a terminal; `--log-level` and
// `--log-format` on every daemon. A JSON line is flat: time, level, msg, then the log annotations (the CNI daemon's
// command, pod, sandbox, networks, duration_ms, result, error …), then the cause of a failure if there is one.
import { Cause, Layer, Logger, type LogLevel, References, Schema } from "effect";

export const LogLevelFlag = Schema.Literals(["debug", "info", "warn", "error"]);
export type LogLevelFlag = typeof LogLevelFlag.Type;
export const LogFormatFlag = Schema.Literals(["auto", "json", "text"]);
export type LogFormatFlag = typeof LogFormatFlag.Type;

/** The flags, for node:util parseArgs. */
export const logFlagOptions = {
  "log-level": { type: "string", default: "info" },
  "log-format": { type: "string", default: "auto" },
} as const;

/** The flags' schema fields, for the binaries' flag Schemas. */
export const logFlagFields = { "log-level": LogLevelFlag, "log-format": LogFormatFlag };

export const logFlagsUsage = `  --log-level LEVEL           debug, info, warn or error [info]
  --log-format FORMAT         json (one object a line), text, or auto: text on a terminal, else json [auto]`;

const levels: Record<LogLevelFlag, LogLevel.LogLevel> = { debug: "Debug", info: "Info", warn: "Warn", error: "Error" };

const text = (v: unknown): string => (typeof v === "string" ? v : v instanceof Error ? v.message : String(v));

/** One flat JSON object per entry. */
export const jsonLogger = (write: (line: string) => void = console.log) =>
  Logger.make(({ message, logLevel, cause, fiber, date }) => {
    const parts = Array.isArray(message) ? message : [message];
    const entry: Record<string, unknown> = {
      time: date.toISOString(),
      level: logLevel.toLowerCase(),
      msg: parts.filter((p) => !Cause.isCause(p)).map(text).join(" "),
    };
    for (const [k, v] of Object.entries(fiber.getRef(References.CurrentLogAnnotations))) {
      if (!(k in entry)) entry[k] = v;
    }
    if (cause.reasons.length > 0) entry.cause = Cause.pretty(cause);
    let line: string;
    try {
      line = JSON.stringify(entry);
    } catch {
      line = JSON.stringify({ time: entry.time, level: entry.level, msg: entry.msg, note: "annotations not JSON" });
    }
    write(line);
  });

/** The logger and minimum level of a binary, from its flags. */
export const loggingLayer = (level: LogLevelFlag, format: LogFormatFlag): Layer.Layer<never> => {
  const json = format === "json" || (format === "auto" && !Deno.stdout.isTerminal());
  return Layer.mergeAll(
    Logger.layer([json ? jsonLogger() : Logger.consoleLogFmt]),
    Layer.succeed(References.MinimumLogLevel, levels[level]),
  );
};
