// Admission reads are on the request path: a transient apiserver hiccup (429 while a CRD's storage initializes,
// a dropped connection) is retried briefly rather than turned into a refusal.
import { Effect, Schedule } from "effect";
import { isTransient, type KubeError } from "../ports/kube.ts";

export const retryTransient = <A, R>(e: Effect.Effect<A, KubeError, R>): Effect.Effect<A, KubeError, R> =>
  Effect.retry(e, { times: 5, schedule: Schedule.exponential("20 millis"), while: isTransient });
