// Errors of svcwatcher's reconcilers. Each names the object, the step that failed and why.
import { Schema } from "effect";
import type { KubeError } from "../ports/kube.ts";

/**
 * One reconcile of a Service failed at `operation` (e.g. "update EndpointSlice web-danm-v4-…-0"). `race` marks
 * failures caused by a view older than the apiserver (conflict, already exists, not found): retried at once,
 * no Event.
 */
export class ServiceSyncError extends Schema.TaggedError<ServiceSyncError>()("ServiceSyncError", {
  service: Schema.String,
  operation: Schema.String,
  reason: Schema.String,
  errorTag: Schema.String,
  race: Schema.Boolean,
}) {
  override get message(): string {
    return `syncing Service ${this.service}: ${this.operation}: ${this.reason}`;
  }
}

/** Rewriting the labels of a DanmEp to its pod's failed. */
export class DanmEpLabelSyncError extends Schema.TaggedError<DanmEpLabelSyncError>()("DanmEpLabelSyncError", {
  danmEp: Schema.String,
  pod: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `copying the labels of pod ${this.pod} onto DanmEp ${this.danmEp}: ${this.reason}`;
  }
}

const raceTags = new Set(["KubeConflict", "KubeAlreadyExists", "KubeNotFound"]);

export const syncError = (service: string, operation: string) => (e: KubeError): ServiceSyncError =>
  new ServiceSyncError({ service, operation, reason: e.message, errorTag: e._tag, race: raceTags.has(e._tag) });
