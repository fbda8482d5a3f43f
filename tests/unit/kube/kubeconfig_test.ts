// The kubeconfig reader of the live Kube layer (adapters/kube/kubeconfig.ts) against client-node's KubeConfig, which
// it replaces for the common forms (client-node costs each process ~60–80 MiB of resident memory to import) and still
// uses for exec plugins and auth providers.
import * as k8s from "@kubernetes/client-node";
import type { RequestOptions } from "node:https";
import { connectionSettings } from "../../../adapters/kube/kubeconfig.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { moduleGraph } from "../../harness/modules.ts";
import { repoRoot } from "../../harness/proc.ts";

const pem = (what: string) => `-----BEGIN ${what}-----\nMIIB${what.replace(/ /g, "")}\n-----END ${what}-----\n`;
const b64 = (s: string) => btoa(s);

/** What client-node makes of the same file: server, TLS material and request headers. */
async function clientNodeView(path: string) {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  const o: RequestOptions = { headers: {} };
  await kc.applyToHTTPSOptions(o);
  const text = (
    v: unknown,
  ) => (v === undefined ? undefined : v instanceof Uint8Array ? new TextDecoder().decode(v) : String(v));
  const headers = { ...(o.headers as Record<string, string>) };
  if (typeof o.auth === "string") headers.Authorization = `Basic ${btoa(o.auth)}`;
  return { server: kc.getCurrentCluster()!.server, ca: text(o.ca), cert: text(o.cert), key: text(o.key), headers };
}

async function ourView(path: string) {
  const s = await connectionSettings({ _tag: "Kubeconfig", path });
  return { server: s.server, ca: s.ca, cert: s.cert, key: s.key, headers: await s.headers() };
}

const kubeconfig = (cluster: Record<string, unknown>, user: Record<string, unknown>) =>
  JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "other", cluster: { server: "https://10.9.9.9:6443" } }, { name: "c", cluster }],
    users: [{ name: "u", user }],
    contexts: [{ name: "ctx", context: { cluster: "c", user: "u", namespace: "kube-system" } }],
    "current-context": "ctx",
  });

Deno.test("kubeconfig: certificates, tokens, token files and basic auth read as client-node reads them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-kubeconfig-" });
  try {
    await Deno.mkdir(`${dir}/pki`);
    await Deno.writeTextFile(`${dir}/pki/ca.crt`, pem("CERTIFICATE AUTHORITY"));
    await Deno.writeTextFile(`${dir}/pki/client.crt`, pem("CERTIFICATE"));
    await Deno.writeTextFile(`${dir}/pki/client.key`, pem("PRIVATE KEY"));
    await Deno.writeTextFile(`${dir}/token`, "file-token"); // client-node would send a newline along
    const cases: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
      ["inline data and a token", {
        server: "https://127.0.0.1:6443",
        "certificate-authority-data": b64(pem("CERTIFICATE AUTHORITY")),
      }, {
        "client-certificate-data": b64(pem("CERTIFICATE")),
        "client-key-data": b64(pem("PRIVATE KEY")),
        token: "abc",
      }],
      ["files relative to the kubeconfig", { server: "https://[::1]:6443", "certificate-authority": "pki/ca.crt" }, {
        "client-certificate": "pki/client.crt",
        "client-key": `${dir}/pki/client.key`,
      }],
      // client-node reads "token-file"; client-go (kubectl) writes and reads "tokenFile", checked below.
      ["a token file", { server: "https://api.example:443", "certificate-authority": "pki/ca.crt" }, {
        "token-file": `${dir}/token`,
      }],
      ["basic auth", { server: "https://api.example:443" }, { username: "admin", password: "s3cret" }],
      ["plain http, no credentials", { server: "http://127.0.0.1:8080", "insecure-skip-tls-verify": true }, {}],
    ];
    for (const [what, cluster, user] of cases) {
      const path = `${dir}/config-${what.replaceAll(" ", "-")}`;
      await Deno.writeTextFile(path, kubeconfig(cluster, user));
      assertEquals(await ourView(path), await clientNodeView(path), what);
    }
    // kubectl's tokenFile, relative to the kubeconfig as kubectl reads it (client-node ignores the key).
    const relative = `${dir}/config-relative-token`;
    await Deno.writeTextFile(relative, kubeconfig({ server: "https://api.example:443" }, { tokenFile: "token" }));
    assertEquals((await ourView(relative)).headers, { Authorization: "Bearer file-token" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubeconfig: exec plugins go through client-node; broken files are errors naming the problem", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-kubeconfig-" });
  try {
    const plugin = `${dir}/cred.sh`;
    await Deno.writeTextFile(
      plugin,
      `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-exec"}}'\n`,
    );
    await Deno.chmod(plugin, 0o755);
    const path = `${dir}/config`;
    await Deno.writeTextFile(
      path,
      kubeconfig({ server: "https://127.0.0.1:6443" }, {
        exec: { apiVersion: "client.authentication.k8s.io/v1", command: plugin, interactiveMode: "Never" },
      }),
    );
    assertEquals((await ourView(path)).headers, { Authorization: "Bearer from-exec" });

    await Deno.writeTextFile(path, kubeconfig({ server: 6443 }, {}));
    const bad = await connectionSettings({ _tag: "Kubeconfig", path }).then(() => undefined, (e: Error) => e);
    assert(bad !== undefined, "a cluster without a string server is refused");
    assertMatch(bad.message, /clusters\[1\]\.cluster\.server/);
    await Deno.writeTextFile(
      path,
      kubeconfig({ server: "https://x" }, {}).replace('"current-context":"ctx"', '"current-context":"nope"'),
    );
    const missing = await connectionSettings({ _tag: "Kubeconfig", path }).then(() => undefined, (e: Error) => e);
    assertMatch(missing?.message ?? "", /no context "nope"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubeconfig: no long-running binary imports client-node up front", () => {
  for (const entry of ["cmd/netwatcher.ts", "cmd/danmd.ts", "cmd/webhook.ts", "cmd/svcwatcher.ts"]) {
    for (const mod of moduleGraph(entry)) {
      const text = Deno.readTextFileSync(`${repoRoot}/${mod}`);
      assert(!/^import[^;]*from "@kubernetes\/client-node"/m.test(text), `${entry} imports client-node through ${mod}`);
    }
  }
});
