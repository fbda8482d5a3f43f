// What the containers of the k8s/ base run, run here: each container's command and arguments exactly as rendered
// (image paths mapped to this checkout and temporary directories, ports and names made unique), with exactly
// the Deno permissions of the manifest, against the test apiserver. A missing permission, a wrong path or a bad
// flag in a manifest fails here rather than in a CrashLoopBackOff.
//
// - install-cni.sh (the node's init container), both modes: launchers staged at a host path, compiled binaries
//   copied; the installed `danm` reaches a daemon on the configured socket.
// - the node agent (netwatcher + CNI daemon), with only the base's ClusterRole (a service-account token), answers
//   CNI STATUS through the installed launcher, and its periodic reclaim loop frees this node's reservations of pods
//   that are gone (and keeps a live pod's).
// - svcwatcher takes its Lease; the webhook bootstraps its certificate and becomes ready.
import { Effect, Exit, Scope } from "effect";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import { DanmNetResource } from "../../../core/api/danm.ts";
import { ipBlockResource, labels as ipamLabels } from "../../../core/api/ipam.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { blockName } from "../../../core/ipam/allocator.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { eventually } from "../../harness/eventually.ts";
import { freePort, repoRoot } from "../../harness/proc.ts";
import { renderKustomization } from "../../unit/k8s/kustomize.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import {
  type Api,
  apiClient,
  type Container,
  localCommand,
  messageOf,
  start,
  tokenKubeconfig,
  whileRunning,
  type Workload,
} from "./support.ts";

const base = renderKustomization(`${repoRoot}/k8s`).map((r) => r.object);
const workload = (kind: string, name: string) =>
  (base.find((o) => o.kind === kind && o.metadata.name === name) ?? fail(`no ${kind} ${name}`)) as Workload;
const nodeAgent = workload("DaemonSet", "danm-netwatcher").spec.template.spec;
const installContainer = nodeAgent.initContainers?.[0] ?? fail("no install container");
const agentContainer = nodeAgent.containers[0];

async function denoDir(): Promise<string> {
  const explicit = Deno.env.get("DENO_DIR");
  if (explicit) return explicit;
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout)).denoDir;
}

/** A stand-in for the image's /opt/danm: the sources copied, the test's module cache as its .deno. */
async function fakeImage(dir: string, release: string | undefined): Promise<string> {
  const image = `${dir}/image`;
  await Deno.mkdir(`${image}/k8s/images`, { recursive: true });
  const cp = await new Deno.Command("cp", {
    args: ["-R", "deno.json", "deno.lock", "cmd", "core", "adapters", image],
    cwd: repoRoot,
  }).output();
  assert(cp.success, "copied the sources");
  await Deno.copyFile(`${repoRoot}/k8s/images/install-cni.sh`, `${image}/k8s/images/install-cni.sh`);
  await Deno.symlink(await denoDir(), `${image}/.deno`);
  if (release) await Deno.writeTextFile(`${image}/RELEASE`, `${release}\n`);
  return image;
}

interface Node {
  readonly root: string;
  readonly bin: string;
  readonly conf: string;
  readonly stage: string;
  readonly socket: string;
}

/** A node's directories under `dir`: what the DaemonSet's hostPaths are on a real node. */
async function nodeDirs(dir: string): Promise<Node> {
  await Deno.mkdir(`${dir}/run/danm`, { recursive: true });
  return {
    root: dir,
    bin: `${dir}/host/opt/cni/bin`,
    conf: `${dir}/host/etc/cni/net.d`,
    stage: `${dir}/var/lib/danm`,
    socket: `${dir}/run/danm/danm.sock`,
  };
}

/** Runs the install container's command against `image`, with the node's directories. */
async function runInstall(node: Node, image: string): Promise<string> {
  const cmd = localCommand(installContainer, {
    paths: {
      "/host/opt/cni/bin": node.bin,
      "/host/etc/cni/net.d": node.conf,
      "/var/lib/danm": node.stage,
      "/run/danm": `${node.root}/run/danm`,
    },
  });
  const env = {
    ...cmd.env,
    DANM_IMAGE_ROOT: image,
    DANM_DENO: Deno.execPath(),
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
  };
  const [exe, ...args] = cmd.argv;
  const out = await new Deno.Command(exe, { args, env, clearEnv: true, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, `install-cni.sh failed:\n${text}`);
  return text;
}

/** Executes an installed plugin as a runtime does: a clean environment, the CNI variables, the config on stdin. */
async function cni(
  plugin: string,
  command: string,
  stdin: unknown,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(plugin, {
    env: { CNI_COMMAND: command, CNI_PATH: plugin.replace(/\/[^/]+$/, ""), PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(stdin)));
  await w.close();
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

const readConf = async (node: Node) => JSON.parse(await Deno.readTextFile(`${node.conf}/00-danm.conflist`));
/** The plugin's configuration as a runtime hands it over from the list (libcni adds the list's name and version). */
const asRuntimeSends = (list: { name: string; plugins: unknown[] }, cniVersion: string): Record<string, unknown> => ({
  ...(list.plugins[0] as Record<string, unknown>),
  name: list.name,
  cniVersion,
});

Deno.test("commands: install-cni.sh stages the launcher runtime at its host path; the installed danm reaches the socket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-install-cni-" });
  // A stand-in for the node daemon: records each request, answers success.
  const daemon = (() => {
    let listener: Deno.UnixListener | undefined;
    const requests: Array<{ program: string; env: Record<string, string> }> = [];
    const serve = async (conn: Deno.UnixConn) => {
      try {
        // Read until the client's closeWrite (not through conn.readable: finishing it closes the connection).
        let text = "";
        const decoder = new TextDecoder(), buf = new Uint8Array(65536);
        for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
          text += decoder.decode(buf.subarray(0, n), { stream: true });
        }
        requests.push(JSON.parse(text.trim()));
        await conn.write(new TextEncoder().encode(JSON.stringify({ code: 0, stdout: "", stderr: "" })));
      } finally {
        try {
          conn.close();
        } catch { /* closed with its stream */ }
      }
    };
    return {
      requests,
      listen(path: string) {
        listener = Deno.listen({ transport: "unix", path });
        (async () => {
          for await (const conn of listener!) await serve(conn).catch(() => {});
        })().catch(() => {});
      },
      close() {
        try {
          listener?.close();
        } catch { /* not listening */ }
      },
    };
  })();
  try {
    const node = await nodeDirs(dir);
    const image = await fakeImage(dir, "release-a");
    const log = await runInstall(node, image);
    assertMatch(log, /staged release release-a/);
    const release = `${node.stage}/releases/release-a`;
    for (const plugin of ["danm", "fakeipam"]) {
      const script = await Deno.readTextFile(`${node.bin}/${plugin}`);
      assert(((await Deno.stat(`${node.bin}/${plugin}`)).mode! & 0o111) !== 0, `${plugin} is executable`);
      // Only host paths: the staged Deno, sources and module cache; nothing of the image.
      assert(script.includes(`exec ${release}/bin/deno run --cached-only`), script);
      assert(script.includes(`DENO_DIR=${release}/.deno `), script);
      assert(script.includes(`${release}/cmd/${plugin}.ts`), script);
      assert(!script.includes(image), `${plugin} names nothing inside the image`);
    }
    assertEquals(await readConf(node), {
      cniVersion: "1.0.0",
      cniVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
      name: "danm_meta_cni",
      plugins: [{ type: "danm", daemonSocket: node.socket }],
    });
    assertEquals((await Deno.readTextFile(`${node.stage}/current`)).trim(), "release-a");

    // The image is gone (a new pod, another image): the host's plugins still run from the stage.
    await Deno.rename(image, `${dir}/image-gone`);
    const version = await cni(`${node.bin}/danm`, "VERSION", { cniVersion: "0.4.0" });
    assertEquals([version.code, JSON.parse(version.stdout).cniVersion], [0, "0.4.0"], version.stderr);
    // 00-danm.conflist's socket, with the launcher's own permissions.
    daemon.listen(node.socket);
    const status = await cni(`${node.bin}/danm`, "STATUS", asRuntimeSends(await readConf(node), "1.1.0"));
    assertEquals(status.code, 0, `danm STATUS through the launcher: ${status.stdout} ${status.stderr}`);
    assertEquals(daemon.requests.map((r) => [r.program, r.env.CNI_COMMAND]), [["danm", "STATUS"]]);
    await Deno.rename(`${dir}/image-gone`, image);

    // Upgrades keep the previous release (a plugin may be starting from it) and remove older ones.
    for (const [next, kept] of [["release-b", ["release-a", "release-b"]], ["release-c", ["release-b", "release-c"]]]) {
      await Deno.writeTextFile(`${image}/RELEASE`, `${next}\n`);
      await runInstall(node, image);
      assertEquals([...Deno.readDirSync(`${node.stage}/releases`)].map((e) => e.name).sort(), kept);
      assert((await Deno.readTextFile(`${node.bin}/danm`)).includes(`/releases/${next}/`), "launchers moved on");
    }
    // A restart of the same release stages nothing again.
    const again = await runInstall(node, image);
    assert(!again.includes("staged release"), again);
  } finally {
    daemon.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("commands: install-cni.sh copies compiled clients when the image has them, and stages nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-install-cni-compiled-" });
  try {
    const node = await nodeDirs(dir);
    const image = await fakeImage(dir, undefined);
    await Deno.mkdir(`${image}/dist`);
    for (const plugin of ["danm", "fakeipam"]) {
      await Deno.writeTextFile(`${image}/dist/${plugin}`, `#!/bin/sh\necho compiled ${plugin}\n`, { mode: 0o755 });
    }
    const log = await runInstall(node, image);
    assertMatch(log, /installed .*\/danm \(compiled\)/);
    for (const plugin of ["danm", "fakeipam"]) {
      assertEquals(await Deno.readTextFile(`${node.bin}/${plugin}`), `#!/bin/sh\necho compiled ${plugin}\n`);
      assert(((await Deno.stat(`${node.bin}/${plugin}`)).mode! & 0o111) !== 0, `${plugin} is executable`);
    }
    assertEquals((await readConf(node)).plugins[0].daemonSocket, node.socket);
    assert(!(await Deno.stat(node.stage).then(() => true, () => false)), "nothing staged");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A service account bound to a copy of the base's ClusterRole `role`; returns a token kubeconfig and a cleanup. */
async function serviceAccountKubeconfig(api: Api, url: string, caPem: string, role: string, dir: string) {
  const name = uniqueName("danm-k8s-cmd");
  const rules = (base.find((o) => o.kind === "ClusterRole" && o.metadata.name === role) ?? fail(`no ${role}`)).rules;
  const created: string[] = [];
  const create = async (path: string, body: unknown) => {
    const r = await api.request("POST", path, body);
    assertEquals(r.status, 201, `${path}: ${messageOf(r)}`);
    created.unshift(`${path}/${name}`);
  };
  const cleanup = async () => {
    for (const path of created) await api.request("DELETE", path);
  };
  try {
    await create("/api/v1/namespaces/default/serviceaccounts", { metadata: { name } });
    await create("/apis/rbac.authorization.k8s.io/v1/clusterroles", { metadata: { name }, rules });
    await create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
      subjects: [{ kind: "ServiceAccount", name, namespace: "default" }],
    });
    const token = await api.request("POST", `/api/v1/namespaces/default/serviceaccounts/${name}/token`, {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 3600 },
    });
    assertEquals(token.status, 201, messageOf(token));
    const path = `${dir}/${name}.kubeconfig`;
    const value = (token.body as { status: { token: string } }).status.token;
    await Deno.writeTextFile(path, tokenKubeconfig(url, caPem, value));
    return { path, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function ensureNadCrd(api: Api): Promise<void> {
  const [crd] = renderKustomization(`${repoRoot}/k8s/nad-crd`).map((r) => r.object);
  const r = await api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
  assert(r.status === 201 || r.status === 409, messageOf(r));
  await eventually("the NAD CRD is Established", async () => {
    const got = await api.request(
      "GET",
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`,
    );
    const conditions = (got.body as { status?: { conditions?: Array<{ type: string; status: string }> } }).status
      ?.conditions;
    return conditions?.some((c) => c.type === "Established" && c.status === "True") ? true : undefined;
  });
}

async function healthy(port: number): Promise<true | undefined> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`);
  const ok = r.status === 200 && (await r.text()) === "ok\n";
  return ok ? true : undefined;
}

Deno.test({
  name: "commands: the node agent runs with the base's RBAC only, serves the CNI launchers install-cni.sh wrote, " +
    "and its reclaim loop frees the reservations of this node's gone pods",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await useCluster();
    const api = apiClient(cluster.kubeConfig);
    const dir = await Deno.makeTempDir({ prefix: "danm-node-agent-" });
    const scope = Scope.makeUnsafe();
    let cleanup = async () => {};
    let cleanupObjects = async () => {};
    let agent: ReturnType<typeof start> | undefined;
    try {
      await installDanmCrds(cluster.kubeConfig);
      await ensureNadCrd(api);
      const sa = await serviceAccountKubeconfig(api, cluster.url, cluster.pki.ca.certPem, "danm-netwatcher", dir);
      cleanup = sa.cleanup;
      const node = await nodeDirs(dir);
      await runInstall(node, await fakeImage(dir, "release-node"));

      const port = freePort();
      const nodeName = uniqueName("k8s-cmd-node");
      // Two reservations this node made ten minutes ago (older than the loop's grace): one of a live pod, one of a
      // pod that is gone.
      const kube = await Effect.runPromise(
        makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Scope.provide(scope)),
      );
      const net = await Effect.runPromise(kube.create(DanmNetResource, {
        metadata: { name: uniqueName("reclaim"), namespace: "default" },
        spec: { NetworkID: "rc", Options: { cidr: "10.242.0.0/24" } },
      }));
      const live = await Effect.runPromise(kube.create(PodResource, {
        metadata: { name: uniqueName("alive"), namespace: "default" },
        spec: { nodeName, containers: [{ name: "c", image: "pause" }] },
      }));
      const ref = {
        kind: "DanmNet" as const,
        namespace: "default",
        name: net.metadata.name ?? "",
        uid: net.metadata.uid ?? "",
      };
      const since = new Date(Date.now() - 600_000).toISOString().replace(/\.\d+Z$/, "Z");
      const owner = { sandbox: "s", iface: "eth1", node: nodeName, since };
      await Effect.runPromise(kube.create(ipBlockResource, {
        metadata: { name: blockName(ref, 4, 0n), labels: { [ipamLabels.networkUid]: ref.uid } },
        spec: {
          network: ref,
          family: "IPv4",
          cidr: "10.242.0.0/26",
          node: nodeName,
          reservations: {
            "5": { pod: `default/${live.metadata.name}`, podUid: live.metadata.uid ?? "", ...owner },
            "6": { pod: "default/gone-pod", podUid: "uid-of-a-gone-pod", ...owner },
          },
        },
      }));
      cleanupObjects = async () => {
        await Effect.runPromise(Effect.ignore(kube.delete(ipBlockResource, blockName(ref, 4, 0n))));
        await Effect.runPromise(
          Effect.ignore(kube.delete(PodResource, live.metadata.name ?? "", { namespace: "default" })),
        );
        await Effect.runPromise(Effect.ignore(kube.delete(DanmNetResource, ref.name, { namespace: "default" })));
      };
      agent = start(localCommand(agentContainer as Container, {
        paths: { "/run/danm": `${node.root}/run/danm` },
        fields: { "spec.nodeName": nodeName },
        flags: {
          kubeconfig: sa.path,
          "metrics-port": String(port),
          // Serve no network of the shared apiserver; the reclaim loop frees only this node's reservations.
          "network-selector": `danm.test/k8s-commands=${nodeName}`,
          "reclaim-period": "1s",
        },
      }));
      await eventually("the agent's /healthz", () => healthy(port), whileRunning(agent));
      // CNI STATUS is ready only once every cache has listed and the apiserver answered the DanmEp probe: the
      // ClusterRole's list/watch/get rights, through the host's launcher, with the launcher's permissions.
      const conf = asRuntimeSends(await readConf(node), "1.1.0");
      assertEquals(conf.daemonSocket, node.socket);
      const ready = await eventually("CNI STATUS through the installed danm", async () => {
        const r = await cni(`${node.bin}/danm`, "STATUS", conf);
        // Ready, or a Deno permission the launcher lacks (waiting would not help).
        return r.code === 0 || r.stdout.includes("run again with the --allow-") ? r : undefined;
      }, whileRunning(agent, 45_000)).catch((e) => e as Error);
      if (ready instanceof Error) {
        const last = await cni(`${node.bin}/danm`, "STATUS", conf);
        fail(`${ready.message}\nlast STATUS: ${last.stdout} ${last.stderr}`);
      }
      assertEquals(ready.code, 0, `STATUS: ${ready.stdout} ${ready.stderr}`);
      const log = agent.output();
      assertMatch(log, /watching DanmNet, TenantNetwork, ClusterNetwork, NetworkAttachmentDefinition/);
      assert(!log.includes("cannot list Nodes"), log);
      assert(!/forbidden/i.test(log), `no request was forbidden:\n${log}`);
      const left = await eventually("the reclaim loop to free the gone pod's reservation", async () => {
        const b = await Effect.runPromise(kube.get(ipBlockResource, blockName(ref, 4, 0n)));
        return Object.keys(b.spec.reservations).length === 1 ? b.spec.reservations : undefined;
      }, whileRunning(agent, 30_000));
      assertEquals(Object.values(left).map((r) => r.pod), [`default/${live.metadata.name}`], "the live pod's stays");
      assertMatch(agent.output(), /reclaimed 1 reservation\(s\)/);
      assertEquals(await agent.stop(), 0, agent.output());
      agent = undefined;
    } finally {
      await agent?.stop();
      await cleanupObjects();
      await cleanup();
      await Effect.runPromise(Scope.close(scope, Exit.void));
      await Deno.remove(dir, { recursive: true });
      api.close();
      await cluster.release();
    }
  },
});

Deno.test({
  name: "commands: svcwatcher runs with the manifest's permissions and takes its Lease",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await useCluster();
    const api = apiClient(cluster.kubeConfig);
    const lease = uniqueName("svcw-lease");
    const podName = uniqueName("danm-svcwatcher");
    let proc: ReturnType<typeof start> | undefined;
    try {
      await installDanmCrds(cluster.kubeConfig);
      const port = freePort();
      const container = workload("Deployment", "danm-svcwatcher").spec.template.spec.containers[0];
      proc = start(localCommand(container, {
        fields: { "metadata.name": podName, "metadata.namespace": "default" },
        flags: {
          kubeconfig: cluster.kubeconfigPath,
          "metrics-port": String(port),
          "lease-name": lease,
          // A namespace nobody uses: leave the other tests' Services alone.
          namespace: uniqueName("k8s-commands-none"),
        },
      }));
      await eventually("svcwatcher's /healthz", () => healthy(port), whileRunning(proc));
      await eventually("svcwatcher holds its Lease", async () => {
        const r = await api.request("GET", `/apis/coordination.k8s.io/v1/namespaces/default/leases/${lease}`);
        const holder = (r.body as { spec?: { holderIdentity?: string } }).spec?.holderIdentity;
        return holder === podName ? true : undefined;
      }, whileRunning(proc));
      assertEquals(await proc.stop(), 0, proc.output());
      proc = undefined;
    } finally {
      await proc?.stop();
      await api.request("DELETE", `/apis/coordination.k8s.io/v1/namespaces/default/leases/${lease}`);
      api.close();
      await cluster.release();
    }
  },
});

Deno.test({
  name: "commands: the webhook runs with the manifest's permissions, bootstraps its certificate and becomes ready",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await useCluster();
    const api = apiClient(cluster.kubeConfig);
    const dir = await Deno.makeTempDir({ prefix: "danm-webhook-cmd-" });
    const secret = uniqueName("webhook-tls");
    let proc: ReturnType<typeof start> | undefined;
    try {
      await installDanmCrds(cluster.kubeConfig);
      const port = freePort();
      const container = workload("Deployment", "danm-webhook").spec.template.spec.containers[0];
      proc = start(localCommand(container, {
        // The certificate directory, in the arguments and in --allow-write alike.
        paths: { "/var/run/danm-webhook/tls": `${dir}/tls` },
        fields: { "metadata.namespace": "default" },
        flags: {
          kubeconfig: cluster.kubeconfigPath,
          port: String(port),
          "secret-name": secret,
          "service-name": "localhost",
          "webhook-config-name": uniqueName("absent"),
        },
      }));
      await eventually("the webhook's /readyz", async () => {
        const s = await api.request("GET", `/api/v1/namespaces/default/secrets/${secret}`);
        if (s.status !== 200) return undefined;
        const ca = atob((s.body as { data: Record<string, string> }).data["ca.crt"]);
        const client = Deno.createHttpClient({ caCerts: [ca] });
        try {
          const r = await fetch(`https://localhost:${port}/readyz`, { client });
          return r.status === 200 && (await r.text()) === "ok\n" ? true : undefined;
        } finally {
          client.close();
        }
      }, whileRunning(proc));
      assert((await Deno.stat(`${dir}/tls/tls.crt`)).isFile, "the certificate was written where the manifest says");
      assertEquals(await proc.stop(), 0, proc.output());
      proc = undefined;
    } finally {
      await proc?.stop();
      await api.request("DELETE", `/api/v1/namespaces/default/secrets/${secret}`);
      await Deno.remove(dir, { recursive: true });
      api.close();
      await cluster.release();
    }
  },
});
