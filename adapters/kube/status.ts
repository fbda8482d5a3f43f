// Turns apiserver failures (an HTTP code plus a metav1.Status body) into the Kube port's typed errors. The live
// layer feeds it real responses; the memory store builds Status objects and goes through the same mapping, so
// both report the same error for the same situation.
import { Predicate } from "effect";
import {
  KubeAlreadyExists,
  KubeBadRequest,
  KubeConflict,
  type KubeError,
  KubeForbidden,
  KubeGone,
  KubeInvalid,
  KubeNotFound,
  KubeTimeout,
  KubeUnauthorized,
  KubeUnavailable,
  type StatusCause,
} from "../../core/ports/kube.ts";

/** The request an error belongs to; becomes the error's verb/kind/namespace/objectName. */
export interface RequestTarget {
  readonly verb: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name?: string;
}

export interface StatusBody {
  readonly kind: "Status";
  readonly apiVersion: "v1";
  readonly status: "Failure" | "Success";
  readonly code: number;
  readonly reason?: string;
  readonly message?: string;
  readonly details?: {
    readonly name?: string;
    readonly group?: string;
    readonly kind?: string;
    readonly causes?: ReadonlyArray<StatusCause>;
  };
}

const str = (v: unknown): string | undefined => Predicate.isString(v) ? v : undefined;

const causesOf = (details: unknown): ReadonlyArray<StatusCause> => {
  if (!Predicate.isObject(details) || !Array.isArray(details.causes)) return [];
  return details.causes.filter(Predicate.isObject).map((c) => {
    const field = str(c.field), reason = str(c.reason), message = str(c.message);
    return {
      ...(field !== undefined ? { field } : {}),
      ...(reason !== undefined ? { reason } : {}),
      ...(message !== undefined ? { message } : {}),
    };
  });
};

const targetFields = (t: RequestTarget, detail: string) => ({
  verb: t.verb,
  kind: t.kind,
  ...(t.namespace ? { namespace: t.namespace } : {}),
  ...(t.name ? { objectName: t.name } : {}),
  detail,
});

/** Maps an HTTP status code and the response body (a Status, some text, or nothing) to a KubeError. */
export function errorFromStatus(t: RequestTarget, httpCode: number, body: unknown): KubeError {
  const status = Predicate.isObject(body) ? body : {};
  const code = typeof status.code === "number" && status.code > 0 ? status.code : httpCode;
  const reason = str(status.reason) ?? "";
  const detail = str(status.message) ?? (Predicate.isString(body) ? body.trim().slice(0, 500) : "");
  const f = targetFields(t, detail || `HTTP ${code}`);
  if (reason === "Timeout" || code === 504 || code === 408) return new KubeTimeout(f);
  switch (code) {
    case 401:
      return new KubeUnauthorized(f);
    case 403:
      return new KubeForbidden(f);
    case 404:
      return new KubeNotFound(f);
    case 409:
      return reason === "AlreadyExists" ? new KubeAlreadyExists(f) : new KubeConflict(f);
    case 410:
      return new KubeGone(f);
    case 422:
      return new KubeInvalid({ ...f, causes: causesOf(status.details) });
  }
  if (code === 429 || code >= 500) return new KubeUnavailable({ ...f, code });
  return new KubeBadRequest({ ...f, code });
}

/** A failure below HTTP: connection refused, TLS, reset, DNS. */
export function transportError(t: RequestTarget, cause: unknown): KubeError {
  const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  return new KubeUnavailable(targetFields(t, detail));
}

export function timeoutError(t: RequestTarget, afterMs: number): KubeError {
  return new KubeTimeout(targetFields(t, `no response within ${afterMs} ms`));
}

/** Builds a failure Status the way the apiserver would (used by the memory store). */
export function failureStatus(
  code: number,
  reason: string,
  message: string,
  details?: StatusBody["details"],
): StatusBody {
  return {
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    code,
    reason,
    message,
    ...(details ? { details } : {}),
  };
}
