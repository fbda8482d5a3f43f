// The decoders of outside input that `deno task fuzz` (and, seeded and smaller, the unit tier) feed with generated
// input. Each target runs the decoder exactly as production code calls it and reports what came out: a value, or a
// failure of one of the typed errors it may fail with. Anything else (an exception, an Effect defect, a 500 from the
// admission handler's defect path) is what the fuzzing hunts.
import { Cause, Effect, Exit, type Layer, References, Scope } from "effect";
import fc from "fast-check";
import { type DanmKind, DanmKinds, decodeDanmObject } from "../../core/api/danm.ts";
import { ipBlockResource } from "../../core/api/ipam.ts";
import { parseNetworkSelection, parseNetworkStatus, podInterfaces } from "../../core/api/annotations.ts";
import { decodeNetConf } from "../../core/cni/netconf.ts";
import { type Command, decodeInvocation, decodeResult, supportedVersions } from "../../core/cni/protocol.ts";
import { Kube } from "../../core/ports/kube.ts";
import { decodeReview } from "../../core/webhook/review.ts";
import { decodeWith } from "../../adapters/kube/client.ts";
import { layerMemoryKube, MemoryApiServer } from "../../adapters/kube/memory.ts";
import { decodePodResources } from "../../adapters/kubelet/podresources.ts";
import { encodeStrings } from "../../adapters/kubelet/protobuf.ts";
import * as Codec from "../../adapters/netlink/codec.ts";
import { KernelError } from "../../adapters/netlink/errors.ts";
import { endOfReply } from "../../adapters/netlink/socket.ts";
import {
  decodeMessages,
  encodeMessage,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  Writer,
} from "../../adapters/netlink/wire.ts";
import { makeEnv } from "../unit/webhook/harness.ts";
import { byteCases, type Case, type Json, jsonCases, textCases } from "./inputs.ts";

/** What one decoder call came to. */
export type Outcome =
  | { readonly _tag: "Value" }
  | { readonly _tag: "TypedError"; readonly tag: string; readonly message: string }
  | { readonly _tag: "Untyped"; readonly detail: string };

export interface Target<I> {
  readonly name: string;
  readonly cases: fc.Arbitrary<Case<I>>;
  readonly decode: (input: I) => Outcome | Promise<Outcome>;
  /** Its errors locate the problem (a path, an entry, a field): a one-field change must be named. */
  readonly namesFields: boolean;
  /** Releases what the target set up (the admission target's in-memory apiserver). */
  readonly dispose?: () => Promise<void>;
}

// deno-lint-ignore no-explicit-any
export type AnyTarget = Target<any>;

const describe = (e: unknown): string =>
  e instanceof Error ? `${e.constructor.name}: ${e.message}` : `thrown ${typeof e}: ${String(e)}`;

/** The outcome of a synchronous Effect that may only fail with errors tagged `tags`. */
function outcomeOf<A, E>(exit: Exit.Exit<A, E>, tags: ReadonlyArray<string>): Outcome {
  if (Exit.isSuccess(exit)) return { _tag: "Value" };
  const fail = exit.cause.reasons.find((r) => r._tag === "Fail");
  if (fail) {
    const e = fail.error as { _tag?: unknown; message?: unknown };
    if (typeof e._tag === "string" && tags.includes(e._tag)) {
      return { _tag: "TypedError", tag: e._tag, message: String(e.message ?? "") };
    }
    return { _tag: "Untyped", detail: `failed with an unexpected error: ${describe(fail.error)}` };
  }
  return { _tag: "Untyped", detail: `defect: ${Cause.pretty(exit.cause).slice(0, 600)}` };
}

const runSync = <A, E>(e: Effect.Effect<A, E>, tags: ReadonlyArray<string>): Outcome => {
  try {
    return outcomeOf(Effect.runSyncExit(e), tags);
  } catch (err) {
    return { _tag: "Untyped", detail: `threw ${describe(err)}` };
  }
};

// ---- CNI ----------------------------------------------------------------------------------------------------------

const prevResult = (version: string): Json => ({
  cniVersion: version,
  interfaces: [{ name: "eth0", mac: "02:00:00:00:00:01", sandbox: "/var/run/netns/cni-1" }],
  ips: [{
    address: "10.0.0.5/24",
    gateway: "10.0.0.1",
    interface: 0,
    ...(version === "0.3.1" ? { version: "4" } : {}),
  }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
  dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
});

const danmConf = (version: string, extra: Record<string, Json> = {}): Json => ({
  cniVersion: version,
  name: "meta_cni",
  type: "danm",
  kubeconfig: "/etc/kubernetes/kubeconfig/danm.yml",
  cniDir: "/etc/cni/net.d",
  namingScheme: "awesome",
  ...extra,
});

const commands: Command[] = ["ADD", "DEL", "CHECK", "GC", "STATUS"];
const allows = (version: string, command: Command) =>
  command === "CHECK" ? version !== "0.3.1" : command === "GC" || command === "STATUS" ? version === "1.1.0" : true;

function cniStdin(version: string): Target<string> {
  const seeds: Json[] = [
    danmConf(version),
    danmConf(version, { prevResult: prevResult(version) }),
    ...(version === "1.1.0"
      ? [danmConf(version, { "cni.dev/valid-attachments": [{ containerID: "abc123", ifname: "eth0" }] })]
      : []),
  ];
  return {
    name: `cni-stdin-${version}`,
    // The runtime's verb decides what the configuration must allow (CHECK from 0.4.0, GC and STATUS from 1.1.0).
    cases: fc.tuple(textCases(seeds), fc.constantFrom(...commands)).map(([c, command]) => {
      // A verb the seed's version does not allow fails on that whatever changed: nothing to name then.
      const { changed: _changed, ...unlocated } = c;
      return {
        ...(allows(version, command) ? c : unlocated),
        input: JSON.stringify([command, c.input]),
        how: `${command}: ${c.how}`,
      };
    }),
    decode: (input) => {
      const [command, stdin] = JSON.parse(input) as [Command, string];
      return runSync(decodeNetConf(stdin, command), ["CniError"]);
    },
    namesFields: true,
  };
}

const cniResult: Target<Json> = {
  name: "cni-result",
  cases: jsonCases([
    ...supportedVersions.map(prevResult),
    { cniVersion: "0.2.0", ip4: { ip: "10.0.0.5/24", gateway: "10.0.0.1", routes: [{ dst: "0.0.0.0/0" }] }, dns: {} },
    { cniVersion: "1.1.0", interfaces: [{ name: "net1", mtu: 1500, pciID: "0000:81:10.1" }], ips: [], routes: [] },
  ]),
  decode: (input) => runSync(decodeResult(input), ["CniError"]),
  namesFields: true,
};

const cniEnv: Target<Json> = {
  name: "cni-env",
  cases: jsonCases([
    {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "0123456789abcdef",
      CNI_NETNS: "/var/run/netns/cni-1",
      CNI_IFNAME: "eth0",
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=5f1c0e2a",
      CNI_PATH: "/opt/cni/bin:/usr/libexec/cni",
    },
    { CNI_COMMAND: "DEL", CNI_CONTAINERID: "0123456789abcdef", CNI_IFNAME: "eth0" },
    { CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" },
  ]),
  // The daemon receives the environment as a string map (DaemonRequest); values of other types cannot reach here.
  decode: (input) =>
    input !== null && typeof input === "object" && !Array.isArray(input) &&
      Object.values(input).every((v) => typeof v === "string")
      ? runSync(decodeInvocation(input as Record<string, string>), ["CniError"])
      : { _tag: "Value" },
  namesFields: true,
};

// ---- Annotations ----------------------------------------------------------------------------------------------------

const interfacesAnnotation: Target<string> = {
  name: "annotation-danm-interfaces",
  cases: textCases([
    [{ network: "management", ip: "dynamic" }, { tenantNetwork: "internal", ip: "10.0.0.5/24", ip6: "dynamic" }],
    [{
      clusterNetwork: "external",
      ip: "none",
      proutes: { "10.20.0.0/16": "10.0.0.1" },
      proutes6: { "2001:db8::/64": "2001:db8:1::1" },
    }],
    [{ Network: "legacy", IP: "dynamic", Device: "0000:81:10.1", SequenceId: 2, DefaultIfaceName: "x" }],
    [],
  ]),
  decode: (value) => runSync(podInterfaces({ "danm.io/interfaces": value }), ["AnnotationError"]),
  namesFields: true,
};

const npwgText = fc.array(
  fc.tuple(
    fc.option(fc.constantFrom("default", "kube-system", "Bad_NS", "", " ns ", "a/b")),
    fc.constantFrom("macvlan-conf", "sriov", "", "UPPER", "x".repeat(300), "net@1", "é"),
    fc.option(fc.constantFrom("net1", "eth5", "", "a b", "x".repeat(20))),
  ).map(([ns, name, iface]) => `${ns === null ? "" : `${ns}/`}${name}${iface === null ? "" : `@${iface}`}`),
  { minLength: 0, maxLength: 4 },
).map((items) => ({ input: items.join(","), how: "text form" }));

const npwgNetworks: Target<string> = {
  name: "annotation-npwg-networks",
  cases: fc.oneof(
    {
      weight: 3,
      arbitrary: textCases([
        [{
          name: "macvlan-conf",
          namespace: "default",
          ips: ["10.1.1.5/24"],
          mac: "02:00:00:00:00:09",
          interface: "net1",
        }],
        [{
          name: "sriov",
          "default-route": ["10.1.1.1"],
          portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
          bandwidth: { ingressRate: 1000, egressBurst: 10 },
          "cni-args": { foo: "bar" },
          "infiniband-guid": "c2:11:22:33:44:55:66:77",
        }],
      ]),
    },
    { weight: 1, arbitrary: npwgText },
  ),
  decode: (value) => runSync(parseNetworkSelection(value, "default"), ["AnnotationError"]),
  namesFields: true,
};

const networkStatus: Target<string> = {
  name: "annotation-npwg-network-status",
  cases: textCases([
    [
      { name: "cbr0", interface: "eth0", ips: ["10.244.1.5"], mac: "02:00:00:00:00:01", default: true, dns: {} },
      {
        name: "default/sriov",
        interface: "net1",
        ips: ["10.1.1.5"],
        mtu: 1500,
        gateway: ["10.1.1.1"],
        "device-info": { type: "pci", version: "1.1.0", pci: { "pci-address": "0000:81:10.1" } },
      },
    ],
  ]),
  decode: (value) => runSync(parseNetworkStatus(value), ["AnnotationError"]),
  namesFields: true,
};

// ---- CRD kinds ------------------------------------------------------------------------------------------------------

const meta = (name: string, namespace?: string): Json => ({
  name,
  ...(namespace ? { namespace } : {}),
  uid: "1f0c6a52-5c7e-4a64-9d53-6d1f8f2a0b11",
  resourceVersion: "42",
  labels: { app: "x" },
  annotations: { "danm.io/vni-claim": "nonce" },
  creationTimestamp: "2025-01-01T00:00:00Z",
});

const networkSeed = (kind: string, namespace?: string): Json => ({
  apiVersion: "danm.io/v1",
  kind,
  metadata: meta(`${kind.toLowerCase()}-1`, namespace),
  spec: {
    NetworkID: "internal",
    NetworkType: "ipvlan",
    ...(kind === "ClusterNetwork" ? { AllowedTenants: ["default", "tenant-a"] } : {}),
    Options: {
      host_device: "ens4",
      vxlan: 600,
      container_prefix: "int",
      cidr: "10.0.0.0/24",
      allocation_pool: { start: "10.0.0.10", end: "10.0.0.200", lastIp: "" },
      net6: "2001:db8::/64",
      allocation_pool_v6: { cidr: "2001:db8::/64", start: "", end: "" },
      routes: { "10.20.0.0/16": "10.0.0.1" },
      routes6: { "2001:db8:1::/64": "2001:db8::1" },
      rt_tables: 10,
      mtu: 1450,
    },
  },
  status: {
    observedGeneration: 1,
    conditions: [{
      type: "HostInterfacesReady",
      status: "True",
      lastTransitionTime: "2025-01-01T00:00:00Z",
      reason: "Ready",
      message: "2/2 nodes",
    }],
    hostInterfaces: [{ node: "node-1", ready: true, interfaces: ["vx_internal"] }],
  },
});

const kindSeeds: Record<DanmKind, Json[]> = {
  DanmNet: [networkSeed("DanmNet", "default"), {
    apiVersion: "danm.k8s.io/v1",
    kind: "DanmNet",
    metadata: { name: "flannel", namespace: "default" },
    spec: { NetworkID: "flannel", NetworkType: "flannel" },
  }],
  TenantNetwork: [networkSeed("TenantNetwork", "tenant-a")],
  ClusterNetwork: [networkSeed("ClusterNetwork"), {
    kind: "ClusterNetwork",
    metadata: { name: "sriov-a" },
    spec: {
      NetworkID: "sriova",
      NetworkType: "sriov",
      Options: { device_pool: "nokia.k8s.io/sriov_ens1f0", vlan: 500 },
    },
  }],
  TenantConfig: [{
    apiVersion: "danm.io/v1",
    kind: "TenantConfig",
    metadata: meta("tconf"),
    hostDevices: [
      { name: "ens4", vniType: "vlan", vniRange: "700-710,712" },
      { name: "nokia.k8s.io/sriov_ens1f0", vniType: "vxlan", vniRange: "1200-1300", alloc: "AAAA" },
    ],
    networkIds: { flannel: "flannel", ipvlan: "internal" },
  }],
  DanmEp: [{
    apiVersion: "danm.io/v1",
    kind: "DanmEp",
    metadata: meta("web-0-abcd", "default"),
    spec: {
      NetworkName: "internal",
      NetworkType: "ipvlan",
      EndpointID: "0123456789abcdef_eth1",
      Interface: {
        Name: "eth1",
        Address: "10.0.0.5/24",
        AddressIPv6: "2001:db8::5/64",
        MacAddress: "02:00:00:00:00:05",
        proutes: null,
        proutes6: { "2001:db8:2::/64": "2001:db8::1" },
        DeviceID: "",
        Mtu: 1450,
      },
      Host: "node-1",
      Pod: "web-0",
      PodUID: "5f1c0e2a-0000-4000-8000-000000000001",
      CID: "0123456789abcdef",
      netns: "/var/run/netns/cni-1",
      apiType: "DanmNet",
    },
  }],
};

/** Both ways a danm object is read: strictly as user input (webhook, danmctl), leniently as a stored object. */
function crdKind(kind: DanmKind): Target<Json> {
  return {
    name: `crd-${kind}`,
    cases: jsonCases(kindSeeds[kind]),
    decode: (input) => {
      const strict = runSync(decodeDanmObject(kind, input, "strict"), ["DanmObjectError"]);
      if (strict._tag === "Untyped") return strict;
      const lenient = runSync(decodeDanmObject(kind, input, "lenient"), ["DanmObjectError"]);
      return lenient._tag === "Value" ? strict : lenient;
    },
    namesFields: true,
  };
}

const ipBlockSeed: Json = {
  apiVersion: "danm.io/v1",
  kind: "IPBlock",
  metadata: { name: "internal-10.0.0.0-26", uid: "u1", resourceVersion: "7", labels: { "danm.io/family": "IPv4" } },
  spec: {
    network: { kind: "DanmNet", namespace: "default", name: "internal", uid: "1f0c6a52" },
    family: "IPv4",
    cidr: "10.0.0.0/26",
    node: "node-1",
    reservations: "5 default/web-0 5f1c0e2a-0000-4000-8000-000000000001 0123456789abcdef eth1 node-1 1735689600\n" +
      "9 default/web-1 6a2b uid=x eth1 node-2 1735689601 static\n" +
      "12 default/old uid=5f1c sandbox=abc iface=eth1 node=node-1 since=2025-01-01T00:00:00Z static",
  },
};

/** The same block as danm writes it now (v3: packed IDs, `=` for repeats, `!` for values kept as they are). */
const ipBlockV3Seed: Json = {
  ...(ipBlockSeed as object),
  spec: {
    ...((ipBlockSeed as { spec: object }).spec),
    reservations: "#v3 (kubectl explain ipblocks.spec.reservations)\n" +
      "5 default/web-0 XxwOKgAAQACAAAAAAAAAAQ ASNFZ4mrze8 eth1 node-1 20250101T000000Z\n" +
      "9 =/web-1 !6a2b !uid=x = node-2 = static\n" +
      "12 =/old !5f1c !abc = node-1 !2025-01-01T00:00:00.5Z static",
  },
};

/** An IPBlock as the Kube client reads it from the apiserver (reservations stored as one text). */
const crdIpBlock: Target<Json> = {
  name: "crd-IPBlock",
  cases: jsonCases([ipBlockSeed, ipBlockV3Seed]),
  decode: (input) => runSync(decodeWith(ipBlockResource, "get")(input), ["KubeDecodeError"]),
  namesFields: false,
};

/** The reservations text alone, damaged line by line and token by token. */
const ipBlockText: Target<string> = {
  name: "ipblock-reservations-text",
  cases: fc.tuple(
    fc.array(
      fc.tuple(
        fc.oneof(
          fc.nat({ max: 70 }).map(String),
          fc.constantFrom("007", "-1", "1e3", "", "99999999999999999999", "#v3", "#v4"),
        ),
        fc.array(
          fc.oneof(
            fc.constantFrom("default/web-0", "5f1c0e2a", "0123456789abcdef", "eth1", "node-1", "1735689600", "static"),
            fc.constantFrom("uid=x", "sandbox=y", "iface=", "node=n", "since=2025-01-01T00:00:00Z", "="),
            fc.constantFrom("=/web-1", "!x", "!", "XxwOKgAAQACAAAAAAAAAAQ", "ASNFZ4mrze8", "20250101T000000Z"),
            fc.string({ unit: "binary", maxLength: 6 }),
          ),
          { maxLength: 9 },
        ),
      ).map(([offset, tokens]) => [offset, ...tokens].join(" ")),
      { maxLength: 6 },
    ),
    fc.constantFrom("\n", "\r\n", "\n\n"),
  ).map(([lines, sep]) => ({ input: lines.join(sep), how: "generated lines" })),
  decode: (text) =>
    runSync(
      decodeWith(ipBlockResource, "get")({
        ...(ipBlockSeed as object),
        spec: { ...((ipBlockSeed as { spec: object }).spec), reservations: text },
      }),
      ["KubeDecodeError"],
    ),
  namesFields: false,
};

// ---- AdmissionReview ------------------------------------------------------------------------------------------------

const reviewOf = (operation: string, object: Json, oldObject: Json = null, group = "danm.io"): Json => {
  const kind = (object as { kind?: string } | null)?.kind ?? (oldObject as { kind?: string } | null)?.kind ?? "Pod";
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "705ab4f5-6393-11e8-b7cc-42010a800002",
      kind: { group, version: "v1", kind },
      resource: { group, version: "v1", resource: `${kind.toLowerCase()}s` },
      name: "x",
      namespace: "default",
      operation,
      userInfo: { username: "admin", groups: ["system:masters"], extra: { scopes: ["a"] } },
      object,
      oldObject,
      dryRun: true,
    },
  };
};

const podSeed: Json = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: "web-0",
    namespace: "default",
    annotations: {
      "danm.io/interfaces": '[{"network":"management","ip":"dynamic"},{"clusterNetwork":"external","ip":"10.0.0.9"}]',
      "k8s.v1.cni.cncf.io/networks": "macvlan-conf@net5",
    },
  },
  spec: { containers: [{ name: "c", image: "busybox", resources: { limits: { "nokia.k8s.io/sriov_ens1f0": "1" } } }] },
};

/**
 * The webhook's two endpoints on an in-memory apiserver, requests decoded and judged exactly as served: a response
 * (allowed or refused) or a ReviewDecodeError (HTTP 400). A 500 "internal error" is the defect path.
 */
function admissionReview(): Target<Json> {
  let env: Awaited<ReturnType<typeof setup>> | undefined;
  const setup = async () => {
    const scope = Scope.makeUnsafe();
    const server = new MemoryApiServer();
    const layer = layerMemoryKube(server) as Layer.Layer<Kube>;
    const made = await Effect.runPromise(
      Effect.provide(Scope.provide(makeEnv(server), scope), layer),
    );
    return { scope, made };
  };
  const seeds: Json[] = [
    reviewOf("CREATE", networkSeed("DanmNet", "default")),
    reviewOf("UPDATE", networkSeed("ClusterNetwork"), networkSeed("ClusterNetwork")),
    reviewOf("CREATE", networkSeed("TenantNetwork", "default")),
    reviewOf("DELETE", null, networkSeed("DanmNet", "default")),
    reviewOf("CREATE", kindSeeds.TenantConfig[0]),
    reviewOf("CREATE", podSeed, null, ""),
  ];
  return {
    name: "admission-review",
    cases: jsonCases(seeds),
    decode: async (input) => {
      env ??= await setup();
      const { made } = env;
      for (const endpoint of [made.mutate, made.validate]) {
        // Refusals are logged as warnings by the handler: thousands of them would bury the report.
        const exit = await Effect.runPromiseExit(
          endpoint(input).pipe(Effect.provideService(References.MinimumLogLevel, "None")),
        );
        if (Exit.isFailure(exit)) {
          const o = outcomeOf(exit, ["ReviewDecodeError"]);
          // makeEnv's endpoints turn every failure into a defect; a ReviewDecodeError is the typed answer.
          if (o._tag === "Untyped" && /ReviewDecodeError/.test(o.detail)) {
            return { _tag: "TypedError", tag: "ReviewDecodeError", message: o.detail };
          }
          return o;
        }
        const status = exit.value.response.status;
        if (status?.code === 500 && /internal error/.test(status.message)) {
          return { _tag: "Untyped", detail: `the handler died: ${status.message}` };
        }
      }
      // The review itself decodes, or names what is wrong with it.
      return runSync(decodeReview(input), ["ReviewDecodeError"]);
    },
    namesFields: true,
    dispose: async () => {
      if (env) await Effect.runPromise(Scope.close(env.scope, Exit.void));
    },
  };
}

// ---- PodResources (kubelet gRPC, protobuf) -------------------------------------------------------------------------

const podResourcesSeeds = (() => {
  const devices = (resource: string, ids: string[]) =>
    encodeStrings([[1, resource], ...ids.map((id) => [2, id] as const)]);
  const nested = (field: number, msg: Uint8Array) => Uint8Array.from([(field << 3) | 2, msg.length, ...msg]);
  const container = Uint8Array.from([
    ...encodeStrings([[1, "app"]]),
    ...nested(2, devices("nokia.k8s.io/sriov_ens1f0", ["0000:81:10.1", "0000:81:10.2"])),
  ]);
  const pod = Uint8Array.from([...encodeStrings([[1, "web-0"], [2, "default"]]), ...nested(3, container)]);
  return [nested(1, pod), Uint8Array.from([...nested(1, pod), ...nested(1, pod)]), new Uint8Array()];
})();

const podResources: Target<Uint8Array> = {
  name: "kubelet-podresources",
  cases: byteCases(podResourcesSeeds),
  decode: (buf) => runSync(decodePodResources(buf), ["ProtobufError"]),
  namesFields: false,
};

// ---- Netlink (kernel replies) ---------------------------------------------------------------------------------------

const netlinkSeeds = (() => {
  const msg = (type: number, body: Uint8Array) => encodeMessage(type, NLM_F_MULTI, 7, body);
  const link = (kind: Codec.KindInfo, index: number) => {
    const w = Codec.ifinfomsg(new Writer(), index, Codec.IFF_UP);
    Codec.writeLinkAttrs(w, { name: `l${index}`, mtu: 1500, mac: Uint8Array.of(2, 0, 0, 0, 0, index) });
    w.attrU32(Codec.IFLA.LINK, 2).attrU8(Codec.IFLA.OPERSTATE, 6).attrStr(Codec.IFLA.IFALIAS, "alias");
    Codec.writeLinkInfo(w, kind);
    return msg(Codec.RTM.NEWLINK, w.finish());
  };
  const v4 = Uint8Array.of(10, 0, 0, 5), v6 = Uint8Array.of(0x20, 1, 0xd, 0xb8, ...new Array(11).fill(0), 5);
  const error = new Uint8Array(20);
  new DataView(error.buffer).setInt32(0, -17, true);
  return [
    link({
      kind: "vxlan",
      vni: 600,
      port: 4789,
      remote: Uint8Array.of(239, 0, 2, 88),
      learning: true,
      l2miss: true,
      l3miss: true,
      dev: 2,
      ttl: 1,
    }, 5),
    link({ kind: "vlan", id: 500 }, 6),
    link({ kind: "macvlan", mode: "bridge" }, 7),
    link({ kind: "ipvlan", mode: "l2", flag: "bridge" }, 8),
    link({ kind: "veth", peer: { name: "p0" } }, 9),
    msg(
      Codec.RTM.NEWADDR,
      Codec.encodeAddr({
        family: 4,
        prefix: 24,
        flags: 0x280,
        scope: 0,
        index: 5,
        local: v4,
        broadcast: Uint8Array.of(10, 0, 0, 255),
        label: "l5",
      }),
    ),
    msg(Codec.RTM.NEWADDR, Codec.encodeAddr({ family: 6, prefix: 64, flags: 0, scope: 253, index: 5, local: v6 })),
    msg(
      Codec.RTM.NEWROUTE,
      Codec.encodeRoute({
        family: 4,
        dst: v4,
        dstLen: 24,
        table: 300,
        protocol: 4,
        scope: 0,
        type: 1,
        onlink: true,
        gateway: v4,
        oif: 5,
        metric: 10,
        src: v4,
      }),
    ),
    msg(
      Codec.RTM.NEWRULE,
      Codec.encodeRule({
        family: 6,
        src: { bytes: v6, prefix: 64 },
        table: 300,
        priority: 100,
        iif: "eth0",
        fwmark: 1,
      }),
    ),
    msg(
      Codec.RTM.NEWNEIGH,
      Codec.encodeNeigh({
        af: Codec.AF_BRIDGE,
        index: 5,
        state: 0x80,
        flags: 2,
        lladdr: Uint8Array.of(0, 0, 0, 0, 0, 0),
        dst: v4,
      }),
    ),
    encodeMessage(NLMSG_ERROR, 0x300, 7, error),
    encodeMessage(NLMSG_DONE, NLM_F_MULTI, 7, new Uint8Array(4)),
  ];
})();

const decoders: Record<number, (payload: Uint8Array) => unknown> = {
  [Codec.RTM.NEWLINK]: Codec.decodeLink,
  [Codec.RTM.NEWADDR]: Codec.decodeAddr,
  [Codec.RTM.NEWROUTE]: Codec.decodeRoute,
  [Codec.RTM.NEWRULE]: Codec.decodeRule,
  [Codec.RTM.NEWNEIGH]: Codec.decodeNeigh,
};

/** A datagram from the kernel: split into messages, acks and errors read, data messages decoded by type. */
const netlinkReply: Target<Uint8Array> = {
  name: "netlink-replies",
  cases: byteCases(netlinkSeeds),
  decode: (buf) => {
    try {
      for (const m of decodeMessages(buf)) {
        if (endOfReply(m) === "data") decoders[m.type]?.(m.payload);
      }
      return { _tag: "Value" };
    } catch (e) {
      return e instanceof KernelError
        ? { _tag: "TypedError", tag: "KernelError", message: e.message }
        : { _tag: "Untyped", detail: `threw ${describe(e)}` };
    }
  },
  namesFields: false,
};

/** Every target, in report order. */
export function allTargets(): AnyTarget[] {
  return [
    ...supportedVersions.map(cniStdin),
    cniResult,
    cniEnv,
    interfacesAnnotation,
    npwgNetworks,
    networkStatus,
    ...DanmKinds.map(crdKind),
    crdIpBlock,
    ipBlockText,
    admissionReview(),
    podResources,
    netlinkReply,
  ];
}
