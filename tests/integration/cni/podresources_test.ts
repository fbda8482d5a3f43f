// danm's kubelet PodResources client (adapters/kubelet) against the kubelet's own gRPC server code, and its PF
// lookup on a sysfs-shaped tree: where device_pool (SR-IOV) attachments get their VF and its PF.
import { Effect, Exit, Scope } from "effect";
import type { PodDevicesService } from "../../../core/ports/pod_devices.ts";
import { makePodResourcesDevices } from "../../../adapters/kubelet/podresources.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { type PodDevicesFixture, startPodResources } from "../../harness/podresources.ts";

const sriovA = "nokia.k8s.io/sriov_ens1f0", sriovB = "nokia.k8s.io/sriov_ens2f0";

const pods: PodDevicesFixture[] = [
  {
    namespace: "default",
    name: "cnf",
    uid: "uid-cnf",
    containers: [
      {
        name: "dataplane",
        devices: [
          { resourceName: sriovA, deviceIds: ["0000:81:10.1", "0000:81:10.2"] },
          { resourceName: sriovB, deviceIds: ["0000:82:10.5"] },
        ],
      },
      { name: "sidecar", devices: [{ resourceName: sriovA, deviceIds: ["0000:81:10.3"] }] },
    ],
  },
  { namespace: "other", name: "cnf", uid: "uid-other", containers: [{ name: "c", devices: [] }] },
];

async function withClient<A>(
  options: Parameters<typeof makePodResourcesDevices>[0],
  f: (c: PodDevicesService) => Promise<A>,
): Promise<A> {
  const scope = Scope.makeUnsafe();
  try {
    return await f(await Effect.runPromise(Scope.provide(makePodResourcesDevices(options), scope)));
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void));
  }
}

const lookups = async (c: PodDevicesService) => {
  const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(Effect.result(e));
  const pod = { namespace: "default", name: "cnf" };
  const a = await run(c.devices(pod, sriovA));
  const b = await run(c.devices(pod, sriovB));
  const none = await run(c.devices({ namespace: "other", name: "cnf" }, sriovA));
  const missing = await run(c.devices({ namespace: "default", name: "gone" }, sriovA));
  assertEquals(a._tag === "Success" ? a.success : a.failure.message, ["0000:81:10.1", "0000:81:10.2", "0000:81:10.3"]);
  assertEquals(b._tag === "Success" ? b.success : b.failure.message, ["0000:82:10.5"]);
  assertEquals(none._tag === "Success" ? none.success : none.failure.message, []);
  assertEquals(missing._tag, "Failure");
  if (missing._tag === "Failure") {
    assertEquals(missing.failure._tag, "DeviceError");
    assertMatch(missing.failure.message, /default\/gone .*does not list the pod/);
  }
};

Deno.test("PodResources: a pod's device IDs for a resource, container by container, through Get (Kubernetes ≥ 1.34)", async () => {
  await using server = await startPodResources();
  await server.setPods(pods);
  await withClient({ socket: server.socket }, lookups);
});

Deno.test("PodResources: a kubelet without Get (gate off, as before 1.34) answers the same through List", async () => {
  await using server = await startPodResources({ featureGates: "KubeletPodResourcesGet=false" });
  await server.setPods(pods);
  await withClient({ socket: server.socket }, lookups);
});

Deno.test("PodResources: the kubelet's answer follows its pods (a pod admitted after the client started)", async () => {
  await using server = await startPodResources();
  await withClient({ socket: server.socket }, async (c) => {
    const pod = { namespace: "default", name: "cnf" };
    const before = await Effect.runPromise(Effect.flip(c.devices(pod, sriovA)));
    assertMatch(before.message, /does not list the pod/);
    await server.setPods(pods);
    assertEquals(await Effect.runPromise(c.devices(pod, sriovB)), ["0000:82:10.5"]);
  });
});

Deno.test("PodResources: a burst beyond the kubelet's rate limit waits its turn instead of failing", async () => {
  // The kubelet's own limiter, tightened: one call at once, ten a second. Twelve pods start together.
  await using server = await startPodResources({ qps: 10, burst: 1 });
  await server.setPods(pods);
  await withClient({ socket: server.socket }, async (c) => {
    const pod = { namespace: "default", name: "cnf" };
    const got = await Effect.runPromise(
      Effect.all(Array.from({ length: 12 }, () => Effect.result(c.devices(pod, sriovB))), { concurrency: "unbounded" }),
    );
    const failures = got.flatMap((r) => (r._tag === "Failure" ? [r.failure.message] : []));
    assertEquals(failures, []);
  });
});

Deno.test("PodResources: no kubelet socket is a DeviceError naming the socket, not a hang", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withClient({ socket: `${dir}/kubelet.sock`, timeoutMs: 2_000 }, async (c) => {
      const e = await Effect.runPromise(Effect.flip(c.devices({ namespace: "default", name: "cnf" }, sriovA)));
      assertEquals(e._tag, "DeviceError");
      assertMatch(e.message, new RegExp(`cannot reach the kubelet PodResources API at ${dir}/kubelet.sock`));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PF of a VF from sysfs (physfn/net), and ids that are not PCI addresses refused before any path is built", async () => {
  const root = await Deno.makeTempDir({ prefix: "danm-sysfs-" });
  try {
    // As on a host: a VF's physfn links to its PF's PCI device, whose net/ holds the PF netdev.
    const devices = `${root}/bus/pci/devices`;
    await Deno.mkdir(`${devices}/0000:81:00.0/net/ens1f0`, { recursive: true });
    await Deno.mkdir(`${devices}/0000:81:10.1`, { recursive: true });
    await Deno.symlink("../0000:81:00.0", `${devices}/0000:81:10.1/physfn`);
    await Deno.mkdir(`${devices}/0000:82:00.0`, { recursive: true });
    await withClient({ socket: `${root}/none.sock`, sysfsRoot: root }, async (c) => {
      assertEquals(await Effect.runPromise(c.physicalFunction("0000:81:10.1")), "ens1f0");
      const notVf = await Effect.runPromise(Effect.flip(c.physicalFunction("0000:82:00.0")));
      assertMatch(notVf.message, /no PF network device at .*0000:82:00.0\/physfn\/net/);
      for (const bad of ["../../../etc", "0000:81:10.1/../..", ""]) {
        const e = await Effect.runPromise(Effect.flip(c.physicalFunction(bad)));
        assertMatch(e.message, /not a PCI address/);
      }
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
