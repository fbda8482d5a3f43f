// Helpers for the k8s/ tests: raw apiserver requests (server-side apply passes its own content type), discovery,
// and turning a rendered container into a local process (paths mapped, $(VAR) expanded, flags overridden).
import type * as k8s from "@kubernetes/client-node";
import { fail } from "../../harness/assert.ts";
import type { PollOptions } from "../../harness/eventually.ts";
import { repoRoot } from "../../harness/proc.ts";
import type { K8sObject } from "../../unit/k8s/kustomize.ts";
import { type Rest, restClient, type RestResponse } from "../api/rest.ts";

export type ApiResponse = RestResponse;

/** The shared raw client (tests/integration/api/rest.ts); `request` names it as these tests call it. */
export interface Api {
  request: Rest["call"];
  close(): void;
}

export function apiClient(kc: k8s.KubeConfig): Api {
  const rest = restClient(kc);
  return {
    request: (method, path, body, contentType) => rest.call(method, path, body, contentType),
    close: rest.close,
  };
}

export const messageOf = (r: ApiResponse): string =>
  typeof r.body === "object" && r.body !== null && "message" in r.body
    ? String((r.body as { message: unknown }).message)
    : JSON.stringify(r.body).slice(0, 500);

export interface ApiResource {
  readonly plural: string;
  readonly namespaced: boolean;
}

/** kind → resource for one group version, from the apiserver's discovery. */
export async function discover(api: Api, apiVersion: string): Promise<Map<string, ApiResource>> {
  const r = await api.request("GET", apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`);
  if (r.status !== 200) fail(`discovery of ${apiVersion}: ${r.status} ${messageOf(r)}`);
  const out = new Map<string, ApiResource>();
  for (const res of (r.body as { resources: Array<{ name: string; kind: string; namespaced: boolean }> }).resources) {
    if (!res.name.includes("/")) out.set(res.kind, { plural: res.name, namespaced: res.namespaced });
  }
  return out;
}

/** The URL of an object, given its resource. */
export function objectPath(o: K8sObject, res: ApiResource): string {
  const prefix = o.apiVersion.includes("/") ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const ns = res.namespaced ? `/namespaces/${o.metadata.namespace ?? fail(`${o.kind} ${o.metadata.name}: no ns`)}` : "";
  return `${prefix}${ns}/${res.plural}/${o.metadata.name}`;
}

export interface Container {
  readonly name: string;
  readonly command: string[];
  readonly args?: string[];
  readonly env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
}

export interface Workload extends K8sObject {
  readonly spec: { template: { spec: { initContainers?: Container[]; containers: Container[] } } };
}

export interface LocalCommand {
  readonly argv: string[];
  readonly env: Record<string, string>;
}

/**
 * The container's command + args as a local argv: image paths replaced by `paths` (longest first; /opt/danm is the
 * repository), `$(VAR)` expanded from the container's env as kubelet does (fieldRefs from `fields`), then `flags`
 * replace `--name=value` arguments or are appended. The image's DENO_DIR is dropped: the test's module cache is used.
 */
export function localCommand(
  c: Container,
  opts: {
    readonly paths?: Record<string, string>;
    readonly fields?: Record<string, string>;
    readonly flags?: Record<string, string>;
  } = {},
): LocalCommand {
  const paths = Object.entries({ "/opt/danm": repoRoot, ...opts.paths }).sort((a, b) => b[0].length - a[0].length);
  const mapPaths = (s: string) => {
    for (const [from, to] of paths) s = s.split(from).join(to);
    return s;
  };
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.name === "DENO_DIR") continue;
    if (e.value !== undefined) env[e.name] = mapPaths(e.value);
    else if (e.valueFrom?.fieldRef) {
      env[e.name] = opts.fields?.[e.valueFrom.fieldRef.fieldPath] ??
        fail(`no value for ${e.valueFrom.fieldRef.fieldPath}`);
    } else fail(`${c.name}: env ${e.name} has a source this helper does not know`);
  }
  const expand = (s: string) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, v) => env[v] ?? all);
  const args = (c.args ?? []).map((a) => expand(mapPaths(a)));
  const pending = new Map(Object.entries(opts.flags ?? {}));
  const overridden = args.map((a) => {
    const m = /^--([\w-]+)=/.exec(a);
    if (!m || !pending.has(m[1])) return a;
    const value = pending.get(m[1])!;
    pending.delete(m[1]);
    return `--${m[1]}=${value}`;
  });
  for (const [k, v] of pending) overridden.push(`--${k}=${v}`);
  const command = c.command.map(mapPaths);
  if (command[0] === "deno") command[0] = Deno.execPath();
  return { argv: [...command, ...overridden], env };
}

export interface Running {
  readonly child: Deno.ChildProcess;
  /** stdout + stderr so far. */
  output(): string;
  /** The exit code once it has exited. */
  exitCode(): number | undefined;
  /** SIGTERM, then the exit code (SIGKILL after `ms`). */
  stop(ms?: number): Promise<number>;
}

export function start(cmd: LocalCommand): Running {
  const [exe, ...args] = cmd.argv;
  const child = new Deno.Command(exe, {
    args,
    env: cmd.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) text += decoder.decode(chunk, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let code: number | undefined;
  const status = child.status.then((s) => {
    code = s.code;
    return s;
  });
  return {
    child,
    output: () => text,
    exitCode: () => code,
    async stop(ms = 10_000) {
      if (code === undefined) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, ms);
      const s = await status;
      clearTimeout(timer);
      await drained;
      return s.code;
    },
  };
}

/** Poll options (tests/harness/eventually.ts) that end the wait when `proc` exits and show its output on a timeout. */
export const whileRunning = (proc: Running | undefined, timeoutMs?: number): PollOptions => ({
  timeoutMs,
  abort: () => {
    const code = proc?.exitCode();
    return code === undefined ? undefined : `the process exited with ${code}:\n${proc!.output().slice(-4000)}`;
  },
  detail: () => proc?.output().slice(-4000) ?? "",
});

/** A kubeconfig file for the server and CA of `cluster`, authenticating with a bearer token. */
export function tokenKubeconfig(server: string, caPem: string, token: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "c", cluster: { server, "certificate-authority-data": btoa(caPem) } }],
    users: [{ name: "u", user: { token } }],
    contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
    "current-context": "c",
  });
}
