// `deno task compile`: standalone binaries with `deno compile`, into dist/.
//
// deno compile embeds a `denort` runtime that it normally downloads; machines without internet access must
// point DENORT_BIN at a local denort of the same Deno version (the full `deno` binary does not work).
// Without DENORT_BIN this fails up front rather than hanging on a download.
const binaries: Record<string, ReadonlyArray<string>> = {
  // The CNI clients only read stdin/env and talk to the node daemon's socket (a unix socket connect needs
  // --allow-net in Deno 2.9, besides read/write on the path).
  danm: ["--allow-env", "--allow-read", "--allow-write", "--allow-net"],
  fakeipam: ["--allow-env", "--allow-read", "--allow-write", "--allow-net"],
  // The node agent needs netlink (FFI), /run/netns, /proc/sys and the API.
  // Its young generation capped as its DaemonSet runs it (k8s/netwatcher/daemonset.yaml says why).
  netwatcher: ["--allow-all", "--v8-flags=--max-semi-space-size=4"],
  svcwatcher: ["--allow-env", "--allow-read", "--allow-net"],
  webhook: ["--allow-env", "--allow-read", "--allow-net"],
  danmctl: ["--allow-env", "--allow-read", "--allow-net"],
};

const denort = Deno.env.get("DENORT_BIN");
if (!denort) {
  console.error(
    "deno task compile: DENORT_BIN is not set. deno compile needs a denort runtime matching this Deno " +
      `(${Deno.version.deno}); this machine cannot download it. Set DENORT_BIN to a local denort binary, or run ` +
      "the components from source (the node installer writes launchers: cmd/install_cni.ts).",
  );
  Deno.exit(2);
}
try {
  await Deno.stat(denort);
} catch {
  console.error(`deno task compile: DENORT_BIN=${denort} does not exist`);
  Deno.exit(2);
}
const only = Deno.args.length ? Deno.args : Object.keys(binaries);
const root = new URL("..", import.meta.url).pathname;
await Deno.mkdir(`${root}dist`, { recursive: true });
for (const name of only) {
  const perms = binaries[name];
  if (!perms) {
    console.error(`unknown binary ${name}; known: ${Object.keys(binaries).join(", ")}`);
    Deno.exit(2);
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["compile", "--no-check", ...perms, "--output", `${root}dist/${name}`, `${root}cmd/${name}.ts`],
    env: { DENORT_BIN: denort },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) Deno.exit(out.code);
  console.log(`built dist/${name}`);
}
