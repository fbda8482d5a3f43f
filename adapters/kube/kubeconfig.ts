// Where the live Kube layer's connection comes from: server, TLS material and request headers, out of a kubeconfig
// file or the pod's service account.
//
// The common kubeconfig forms — client certificates, bearer tokens, token files, basic auth, each inline or in files —
// and in-cluster service accounts are read here. Anything else (exec plugins, auth providers, proxies, TLS server
// names, impersonation: credentials or transports that client-node manages) goes to client-node's KubeConfig, which
// is imported only then: importing it costs every long-running danm process ~60–80 MiB of resident memory (its
// generated API models), most of a node agent's footprint, for no use in the common case.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import type { RequestOptions } from "node:https";
import { Predicate, Schema } from "effect";
import { problemsOf, renderProblems } from "../../core/api/formats.ts";

export type KubeConfigSource =
  /** A kubeconfig file (its current context, or `context`). */
  | { readonly _tag: "Kubeconfig"; readonly path: string; readonly context?: string }
  /**
   * The pod's service account: KUBERNETES_SERVICE_HOST/PORT and the projected token and CA under
   * /var/run/secrets/kubernetes.io/serviceaccount (each overridable). The token is re-read on every request,
   * so kubelet's token rotation is picked up at once.
   */
  | {
    readonly _tag: "InCluster";
    readonly host?: string;
    readonly port?: string;
    readonly tokenFile?: string;
    readonly caFile?: string;
  }
  /** $KUBECONFIG if set, else in-cluster. */
  | { readonly _tag: "Auto" };

/** What a connection is made of. */
export interface ConnectionSettings {
  readonly server: string;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly skipTLSVerify: boolean;
  /** Headers of each request (credentials that are re-read or refreshed are fetched per request). */
  readonly headers: () => Promise<Record<string, string>>;
}

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

const opt = Schema.optionalKey;
const Str = Schema.String;

/** The parts of a kubeconfig danm reads itself; a key this leaves out is dropped (as client-node ignores it too). */
const Kubeconfig = Schema.Struct({
  "current-context": opt(Schema.NullOr(Str)),
  clusters: opt(Schema.NullOr(Schema.Array(Schema.Struct({
    name: Str,
    cluster: Schema.Struct({
      server: Str,
      "certificate-authority": opt(Str),
      "certificate-authority-data": opt(Str),
      "insecure-skip-tls-verify": opt(Schema.Boolean),
      "tls-server-name": opt(Str),
      "proxy-url": opt(Str),
    }),
  })))),
  users: opt(Schema.NullOr(Schema.Array(Schema.Struct({
    name: Str,
    user: opt(Schema.NullOr(Schema.Struct({
      "client-certificate": opt(Str),
      "client-certificate-data": opt(Str),
      "client-key": opt(Str),
      "client-key-data": opt(Str),
      token: opt(Str),
      tokenFile: opt(Str),
      /** client-node's spelling of tokenFile. */
      "token-file": opt(Str),
      username: opt(Str),
      password: opt(Str),
      exec: opt(Schema.Unknown),
      "auth-provider": opt(Schema.Unknown),
      as: opt(Str),
      "as-groups": opt(Schema.Unknown),
      "as-user-extra": opt(Schema.Unknown),
    }))),
  })))),
  contexts: opt(Schema.NullOr(Schema.Array(Schema.Struct({
    name: Str,
    context: Schema.Struct({ cluster: Str, user: opt(Str), namespace: opt(Str) }),
  })))),
});

const fromBase64 = (data: string) => new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));

/** The settings of a kubeconfig in a form read here, or undefined when it needs client-node. */
async function readKubeconfig(path: string, context: string | undefined): Promise<ConnectionSettings | undefined> {
  const decoded = Schema.decodeUnknownExit(Kubeconfig)(yaml.load(await Deno.readTextFile(path)), { errors: "all" });
  if (decoded._tag === "Failure") {
    const fail = decoded.cause.reasons.find((r) => r._tag === "Fail");
    throw new Error(`${path}: ${fail ? renderProblems(problemsOf(fail.error.issue)) : "not a kubeconfig"}`);
  }
  const kc = decoded.value;
  const name = context ?? kc["current-context"] ?? "";
  const ctx = (kc.contexts ?? []).find((c) => c.name === name)?.context;
  if (!ctx) throw new Error(`${path}: no context "${name}"`);
  const cluster = (kc.clusters ?? []).find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster) throw new Error(`${path}: context "${name}" names no known cluster "${ctx.cluster}"`);
  const user = (kc.users ?? []).find((u) => u.name === ctx.user)?.user ?? {};
  const managed = ["exec", "auth-provider", "as", "as-groups", "as-user-extra"] as const;
  if (managed.some((k) => user[k] !== undefined) || cluster["tls-server-name"] || cluster["proxy-url"]) {
    return undefined;
  }
  // Relative paths are relative to the kubeconfig's directory, as kubectl reads them.
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  const file = (p: string) => Deno.readTextFile(p.startsWith("/") ? p : `${dir}/${p}`);
  const material = async (data: string | undefined, p: string | undefined) =>
    data ? fromBase64(data) : p ? await file(p) : undefined;
  const ca = await material(cluster["certificate-authority-data"], cluster["certificate-authority"]);
  const cert = await material(user["client-certificate-data"], user["client-certificate"]);
  const key = await material(user["client-key-data"], user["client-key"]);
  const { token, username, password } = user;
  const tokenFile = user.tokenFile ?? user["token-file"];
  const headers = token
    ? () => Promise.resolve({ Authorization: `Bearer ${token}` })
    : tokenFile
    ? async () => ({ Authorization: `Bearer ${(await file(tokenFile)).trim()}` })
    : username !== undefined && password !== undefined
    ? () => Promise.resolve({ Authorization: `Basic ${btoa(`${username}:${password}`)}` })
    : () => Promise.resolve({});
  const skipTLSVerify = cluster["insecure-skip-tls-verify"] === true;
  // As client-node: plain http only when the configuration says it skips verification.
  if (cluster.server.startsWith("http:") && !skipTLSVerify) {
    throw new Error(`${path}: plain http to ${cluster.server} needs insecure-skip-tls-verify: true`);
  }
  return {
    server: cluster.server,
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    skipTLSVerify,
    headers,
  };
}

const text = (v: unknown): string | undefined => {
  if (Predicate.isString(v)) return v;
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  if (Array.isArray(v)) return v.map(text).filter(Predicate.isString).join("\n");
  return undefined;
};

const headerRecord = (h: RequestOptions["headers"]): Record<string, string> => {
  const out: Record<string, string> = {};
  if (!h || Array.isArray(h)) return out;
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  return out;
};

/** The settings through client-node's KubeConfig, for what it manages (exec plugins, auth providers …). */
async function viaClientNode(path: string, context: string | undefined): Promise<ConnectionSettings> {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  if (context) kc.setCurrentContext(context);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("no current cluster in the configuration");
  const basic = (o: RequestOptions): Record<string, string> =>
    Predicate.isString(o.auth) ? { Authorization: `Basic ${btoa(o.auth)}` } : {};
  const tls: RequestOptions = {};
  await kc.applyToHTTPSOptions(tls);
  const ca = text(tls.ca), cert = text(tls.cert), key = text(tls.key);
  return {
    server: cluster.server,
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    skipTLSVerify: cluster.skipTLSVerify,
    // Exec plugins and auth providers refresh credentials themselves: ask client-node on every request.
    headers: async () => {
      const o: RequestOptions = { headers: {} };
      await kc.applyToHTTPSOptions(o);
      return { ...headerRecord(o.headers), ...basic(o) };
    },
  };
}

/** The connection settings of `source`. Throws an Error naming what is wrong. */
export async function connectionSettings(source: KubeConfigSource): Promise<ConnectionSettings> {
  const kubeconfigPath = source._tag === "Auto" ? Deno.env.get("KUBECONFIG")?.split(":")[0] : undefined;
  const resolved: Exclude<KubeConfigSource, { _tag: "Auto" }> = source._tag === "Auto"
    ? (kubeconfigPath ? { _tag: "Kubeconfig", path: kubeconfigPath } : { _tag: "InCluster" })
    : source;
  if (resolved._tag === "Kubeconfig") {
    return await readKubeconfig(resolved.path, resolved.context) ??
      await viaClientNode(resolved.path, resolved.context);
  }
  const host = resolved.host ?? Deno.env.get("KUBERNETES_SERVICE_HOST");
  const port = resolved.port ?? Deno.env.get("KUBERNETES_SERVICE_PORT");
  if (!host || !port) throw new Error("KUBERNETES_SERVICE_HOST/PORT are not set: not running in a pod");
  const tokenFile = resolved.tokenFile ?? `${serviceAccountDir}/token`;
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca: await Deno.readTextFile(resolved.caFile ?? `${serviceAccountDir}/ca.crt`),
    skipTLSVerify: false,
    headers: async () => ({ Authorization: `Bearer ${(await Deno.readTextFile(tokenFile)).trim()}` }),
  };
}
