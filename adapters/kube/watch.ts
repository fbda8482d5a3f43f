// The resilient watch behind Kube.watch, shared by the live and memory layers and unit-tested against fake
// sources: it resumes from the last resourceVersion it saw when a watch connection ends or breaks, relists
// when the server answers 410 Gone, and backs off between failed attempts.
import { Effect, Schedule, Stream } from "effect";
import type { KubeError, ListResult, WatchEvent } from "../../core/ports/kube.ts";

export interface WatchSource<A> {
  /** A consistent list of the watched collection. */
  readonly list: Effect.Effect<ListResult<A>, KubeError>;
  /**
   * One watch connection starting after `resourceVersion`: Added/Modified/Deleted/Bookmark events, ending when
   * the server closes the connection, failing with KubeGone when the version is no longer available.
   */
  readonly watchFrom: (resourceVersion: string) => Stream.Stream<WatchEvent<A>, KubeError>;
}

/** Errors that reconnecting cannot fix: the object or the request itself is wrong. */
const permanent = new Set(["KubeDecodeError", "KubeInvalid", "KubeBadRequest"]);

export const isRetryableInWatch = (e: KubeError): boolean => !permanent.has(e._tag);

/** Exponential backoff from 200 ms, capped at 30 s, jittered, forever; gives up only on permanent errors. */
export const defaultWatchRetry: Schedule.Schedule<unknown, KubeError> = Schedule.min([
  Schedule.exponential("200 millis"),
  Schedule.spaced("30 seconds"),
]).pipe(
  Schedule.jittered,
  Schedule.setInputType<KubeError>(),
  Schedule.while(({ input }) => isRetryableInWatch(input)),
  Schedule.tap(({ input }) => Effect.logWarning(`watch failed, retrying: ${input.message}`)),
);

/** Pause before reopening a watch the server closed normally, so a server closing at once cannot spin us. */
const reopenPause = Schedule.spaced("50 millis");

export interface ResilientWatchOptions {
  readonly resourceVersion?: string;
  readonly retry?: Schedule.Schedule<unknown, KubeError>;
}

export function resilientWatch<A>(
  source: WatchSource<A>,
  options: ResilientWatchOptions = {},
): Stream.Stream<WatchEvent<A>, KubeError> {
  // Stream.suspend: every run of the stream gets its own cursor.
  return Stream.suspend(() => {
    let resourceVersion = options.resourceVersion;
    let reason: "initial" | "expired" = "initial";

    const relist = Stream.fromEffect(Effect.map(source.list, (l): WatchEvent<A> => {
      resourceVersion = l.resourceVersion;
      return { _tag: "Sync", items: l.items, resourceVersion: l.resourceVersion, reason };
    }));

    const follow = Stream.suspend(() => source.watchFrom(resourceVersion ?? "")).pipe(
      Stream.tap((ev) =>
        Effect.sync(() => {
          if (ev.resourceVersion) resourceVersion = ev.resourceVersion;
        })
      ),
      // 410: what we missed is gone from the server's history; the next session relists.
      Stream.catchTag("KubeGone", () =>
        Stream.fromEffect(Effect.sync(() => {
          resourceVersion = undefined;
          reason = "expired";
        })).pipe(Stream.drain)),
    );

    const session = Stream.suspend(() => resourceVersion === undefined ? Stream.concat(relist, follow) : follow);

    return session.pipe(
      Stream.repeat(reopenPause),
      // Stream.retry reruns `session` (which resumes from the cursor) and resets the backoff on the first event.
      Stream.retry(options.retry ?? defaultWatchRetry),
    );
  });
}
