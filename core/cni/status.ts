// CNI STATUS (1.1.0): is danm ready for ADDs on this node? Not while its caches have not finished their first list
// (a network or pod would look missing) or while the apiserver, where IPAM and DanmEps live, is unreachable.
// The runtime polls STATUS; the apiserver probe is reused for a short while so polling stays cheap.
import { Effect, Ref } from "effect";
import { DanmEpResource } from "../api/danm.ts";
import { Kube } from "../ports/kube.ts";
import { CniError, ErrorCode } from "./protocol.ts";
import { CniRuntime } from "./runtime.ts";

/** An object that never exists: a NotFound answer proves the apiserver and the DanmEp API are reachable. */
const probeName = "danm-status-probe";

export const status = Effect.gen(function* () {
  const rt = yield* CniRuntime;
  const kube = yield* Kube;
  const waiting = yield* rt.unsynced;
  if (waiting.length > 0) {
    return yield* new CniError({
      code: ErrorCode.pluginNotAvailable,
      msg: "danm node daemon is not ready",
      details: `waiting for the first list of ${waiting.join(", ")}`,
    });
  }
  const now = Date.now();
  const last = yield* Ref.get(rt.probe);
  let problem = last?.problem;
  if (last === undefined || now - last.at >= rt.config.statusProbeTtlMs) {
    problem = yield* kube.get(DanmEpResource, probeName, { namespace: "default" }).pipe(
      Effect.as(undefined),
      Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
      Effect.catch((e) => Effect.succeed(e.message)),
      Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.succeed("no answer within 2 s") }),
    );
    yield* Ref.set(rt.probe, { at: now, problem });
  }
  if (problem !== undefined) {
    return yield* new CniError({
      code: ErrorCode.pluginNotAvailable,
      msg: "danm cannot reach the Kubernetes API",
      details: problem,
    });
  }
});
