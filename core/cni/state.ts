// The node-local sandbox records: what danm did (or set out to do) for each sandbox, written before anything is
// created and completed after ADD succeeds. DEL, CHECK and GC start from them, so a DEL without prevResult, a DEL
// after the DanmEps were lost, or a rollback after a daemon restart still knows every interface, delegate config,
// policy rule and IPAM owner to undo. One JSON file per sandbox under the state directory (tmpfs by default:
// after a reboot the namespaces are gone too, and GC frees what the apiserver still holds).
import { Effect, Schema } from "effect";
import { NetworkRef } from "../api/ipam.ts";
import { Fs } from "../ports/filesystem.ts";
import { DelegateChain } from "./attach/delegate.ts";
import { SandboxStateError } from "./errors.ts";

export const RuleRecord = Schema.Struct({ src: Schema.String, table: Schema.Number });
export type RuleRecord = typeof RuleRecord.Type;

export const AttachmentRecord = Schema.Struct({
  index: Schema.Number,
  ifName: Schema.String,
  network: Schema.Struct({
    kind: Schema.String,
    namespace: Schema.optionalKey(Schema.String),
    name: Schema.String,
    uid: Schema.String,
  }),
  networkType: Schema.String,
  // "ipvlan" = a link danm built in (IPVLAN or MACVLAN) and deletes itself: the value predates the built-in MACVLAN
  // and stays, since records on disk (and older agents reading them) carry it.
  backend: Schema.Literals(["ipvlan", "delegate"]),
  /** The IPAM network danm reserved on (the owner is the pod UID + ifName + sandbox). */
  ipam: Schema.optionalKey(NetworkRef),
  epName: Schema.optionalKey(Schema.String),
  delegate: Schema.optionalKey(DelegateChain),
  /** The delegate's raw result: prevResult for its DEL and CHECK. */
  delegateResult: Schema.optionalKey(Schema.Unknown),
  /** The interface's addresses ("10.0.0.5/24"). */
  addresses: Schema.optionalKey(Schema.Array(Schema.String)),
  rules: Schema.optionalKey(Schema.Array(RuleRecord)),
  /** Links danm created in the pod beside the delegate's (DPDK dummy and VLAN), deleted after the delegate's DEL. */
  ownLinks: Schema.optionalKey(Schema.Array(Schema.String)),
});
export type AttachmentRecord = typeof AttachmentRecord.Type;

export const SandboxRecord = Schema.Struct({
  containerId: Schema.String,
  netns: Schema.String,
  node: Schema.String,
  /** RFC 3339; GC leaves young records alone. */
  created: Schema.String,
  pod: Schema.Struct({ namespace: Schema.String, name: Schema.String, uid: Schema.String }),
  /** CNI_PATH and CNI_ARGS of the ADD: a teardown without a runtime (GC, retries) runs delegates with them. */
  cniPath: Schema.Array(Schema.String),
  cniArgs: Schema.String,
  /** "adding" until ADD succeeded. */
  phase: Schema.Literals(["adding", "ready"]),
  attachments: Schema.Array(AttachmentRecord),
  /** danm's result in the 1.1.0 encoding. */
  result: Schema.optionalKey(Schema.Unknown),
});
export type SandboxRecord = typeof SandboxRecord.Type;

/** The CNI spec's container ID alphabet; anything else could escape the state directory. */
export const validContainerId = (id: string): boolean => /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id) && id.length <= 256;

const pathOf = (dir: string, id: string) => `${dir}/${id}.json`;

const stateError = (operation: string, containerId: string) => (e: { message: string }) =>
  new SandboxStateError({ operation, containerId, reason: e.message });

export const writeRecord = (dir: string, record: SandboxRecord) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    const text = JSON.stringify(Schema.encodeSync(SandboxRecord)(record));
    const write = fs.writeAtomic(pathOf(dir, record.containerId), text, { mode: 0o600 });
    yield* write.pipe(
      // The directory vanished (tmpfs remounted, removed by hand): recreate it once.
      Effect.catchTag("FsNotFound", () => Effect.andThen(fs.mkdir(dir, { mode: 0o700 }), write)),
      Effect.mapError(stateError("write", record.containerId)),
    );
  });

/** The record file's text, or undefined when there is none. */
export const readRecordText = (dir: string, containerId: string) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    return yield* fs.readText(pathOf(dir, containerId)).pipe(
      Effect.map((t): string | undefined => t),
      Effect.catchTag("FsNotFound", () => Effect.succeed(undefined)),
      Effect.mapError(stateError("read", containerId)),
    );
  });

/** A record file's text as a record; fails with why it is not one (not JSON, or not a record's shape). */
export const decodeRecord = (text: string) =>
  Effect.try({ try: (): unknown => JSON.parse(text), catch: (e) => String(e) }).pipe(
    Effect.flatMap((json) => Schema.decodeUnknownEffect(SandboxRecord)(json)),
  );

/** The record, or undefined when there is none (or it is unreadable, which is logged). */
export const readRecord = (dir: string, containerId: string) =>
  Effect.gen(function* () {
    const text = yield* readRecordText(dir, containerId);
    if (text === undefined) return undefined;
    return yield* decodeRecord(text).pipe(
      Effect.map((r): SandboxRecord | undefined => r),
      Effect.catch((e) =>
        Effect.as(
          Effect.logWarning(`sandbox record ${containerId} is unreadable and ignored: ${String(e)}`),
          undefined,
        )
      ),
    );
  });

export const removeRecord = (dir: string, containerId: string) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    yield* fs.remove(pathOf(dir, containerId), { force: true }).pipe(
      Effect.mapError(stateError("remove", containerId)),
    );
  });

/** Container IDs with a record. */
export const listRecords = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    const entries = yield* fs.readDir(dir).pipe(
      Effect.catchTag("FsNotFound", () => Effect.succeed([])),
      Effect.mapError(stateError("list", dir)),
    );
    return entries.filter((e) => e.kind === "file" && e.name.endsWith(".json")).map((e) => e.name.slice(0, -5));
  });
