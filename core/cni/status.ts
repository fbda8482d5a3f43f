// CNI STATUS (1.1.0): is danm ready for ADDs on this node? Not while its caches have not finished their first list
// (a network or pod would look missing) or while the apiserver, where IPAM and DanmEps live, is unreachable.
// The runtime polls STATUS; the apiserver probe is reused for a short while so polling stays cheap.
import { Effect } from "effect";
import { CniError, ErrorCode } from "./protocol.ts";
import { CniRuntime } from "./runtime.ts";

export const status = Effect.gen(function* () {
  const rt = yield* CniRuntime;
  const waiting = yield* rt.unsynced;
  if (waiting.length > 0) {
    return yield* new CniError({
      code: ErrorCode.pluginNotAvailable,
      msg: "danm node daemon is not ready",
      details: `waiting for the first list of ${waiting.join(", ")}`,
    });
  }
  const problem = yield* rt.apiReachable;
  if (problem !== undefined) {
    return yield* new CniError({
      code: ErrorCode.pluginNotAvailable,
      msg: "danm cannot reach the Kubernetes API",
      details: problem,
    });
  }
});
