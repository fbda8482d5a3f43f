// The live PodDevices: device IDs from the kubelet PodResources gRPC API (v1) on its unix socket, the PF behind a
// VF and the driver a device is bound to from sysfs — what DANM gets through Multus's kubeletclient and sriov-cni's utils (danm-spec §4.8).
//
// gRPC is spoken directly: Deno's fetch over the unix socket with HTTP/2 prior knowledge, one length-prefixed
// protobuf message each way. `Get` (one pod; beta and on by default since Kubernetes 1.34) is asked first; a kubelet
// without it, or with its feature gate off, answers with an error and `List` (every pod of the node, GA) is used.
import { Effect, Layer, Schedule, Schema } from "effect";
import { DeviceError, PodDevices, type PodDevicesService } from "../../core/ports/pod_devices.ts";
import { encodeStrings, fields, message, ProtobufError, text } from "./protobuf.ts";

export const defaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock";

export interface PodResourcesOptions {
  /** The kubelet's PodResources socket. Default /var/lib/kubelet/pod-resources/kubelet.sock. */
  readonly socket?: string;
  /** Where sysfs is mounted. Default /sys. */
  readonly sysfsRoot?: string;
  /** Per call. Default 5 s. */
  readonly timeoutMs?: number;
}

const ContainerDevices = Schema.Struct({
  resourceName: Schema.String,
  deviceIds: Schema.Array(Schema.String),
});
const PodResources = Schema.Struct({
  namespace: Schema.String,
  name: Schema.String,
  containers: Schema.Array(Schema.Struct({ name: Schema.String, devices: Schema.Array(ContainerDevices) })),
});
type PodResources = typeof PodResources.Type;

// PodResources { name = 1; namespace = 2; repeated ContainerResources containers = 3 }
// ContainerResources { name = 1; repeated ContainerDevices devices = 2; … }
// ContainerDevices { resource_name = 1; repeated device_ids = 2; … }
function parsePodResources(buf: Uint8Array): unknown {
  const pod = { namespace: "", name: "", containers: [] as unknown[] };
  for (const f of fields(buf)) {
    if (f.field === 1) pod.name = text(f);
    else if (f.field === 2) pod.namespace = text(f);
    else if (f.field === 3) {
      const c = { name: "", devices: [] as unknown[] };
      for (const g of fields(message(f))) {
        if (g.field === 1) c.name = text(g);
        else if (g.field === 2) {
          const d = { resourceName: "", deviceIds: [] as string[] };
          for (const h of fields(message(g))) {
            if (h.field === 1) d.resourceName = text(h);
            else if (h.field === 2) d.deviceIds.push(text(h));
          }
          c.devices.push(d);
        }
      }
      pod.containers.push(c);
    }
  }
  return pod;
}

/** GetPodResourcesResponse and ListPodResourcesResponse both carry PodResources in field 1. */
function parseResponse(buf: Uint8Array): unknown[] {
  const pods: unknown[] = [];
  for (const f of fields(buf)) if (f.field === 1) pods.push(parsePodResources(message(f)));
  return pods;
}

/** The pods of a Get or List answer; malformed wire data or an unexpected shape is a ProtobufError. */
export const decodePodResources = (buf: Uint8Array): Effect.Effect<ReadonlyArray<PodResources>, ProtobufError> =>
  Effect.try({
    try: () => parseResponse(buf),
    catch: (e) => e instanceof ProtobufError ? e : new ProtobufError({ reason: String(e) }),
  }).pipe(
    Effect.flatMap((pods) =>
      Schema.decodeUnknownEffect(Schema.Array(PodResources))(pods).pipe(
        Effect.mapError((e) => new ProtobufError({ reason: e.message })),
      )
    ),
  );

/** gRPC status RESOURCE_EXHAUSTED: the kubelet's rate limit. */
const ResourceExhausted = 8;

/** A failed call: `code` is the gRPC status when the kubelet answered, undefined when it could not be reached. */
interface CallFailure {
  readonly code: number | undefined;
  readonly reason: string;
}

/** The device IDs of `pod` for `resource`, container by container, in the kubelet's order. */
export function devicesOf(pod: PodResources, resource: string): string[] {
  return pod.containers.flatMap((c) =>
    c.devices.filter((d) => d.resourceName === resource).flatMap((d) => d.deviceIds)
  );
}

/** A PCI address as sysfs names devices ("0000:81:10.1"): checked before it becomes part of a path. */
const pciAddress = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;

/** A VF's physical function and a device's driver, read from sysfs (under `sysfs`). */
function pciDevices(sysfs: string): Pick<PodDevicesService, "physicalFunction" | "driver"> {
  const physicalFunction: PodDevicesService["physicalFunction"] = (deviceId) =>
    Effect.gen(function* () {
      const failure = (reason: string) => new DeviceError({ pod: "-", resource: deviceId, reason });
      if (!pciAddress.test(deviceId)) {
        return yield* failure("not a PCI address (expected e.g. 0000:81:10.1)");
      }
      const dir = `${sysfs}/bus/pci/devices/${deviceId}/physfn/net`;
      const names = yield* Effect.tryPromise({
        try: async () => {
          const out: string[] = [];
          for await (const e of Deno.readDir(dir)) out.push(e.name);
          return out.sort();
        },
        catch: (e) =>
          failure(
            e instanceof Deno.errors.NotFound
              ? `no PF network device at ${dir} (not a VF, or its PF has no kernel driver)`
              : `cannot read ${dir}: ${e instanceof Error ? e.message : e}`,
          ),
      });
      if (names.length === 0) return yield* failure(`${dir} is empty: the PF has no network device`);
      return names[0];
    });

  const driver: PodDevicesService["driver"] = (deviceId) =>
    Effect.gen(function* () {
      if (!pciAddress.test(deviceId)) {
        return yield* new DeviceError({
          pod: "-",
          resource: deviceId,
          reason: "not a PCI address (expected e.g. 0000:81:10.1)",
        });
      }
      const link = `${sysfs}/bus/pci/devices/${deviceId}/driver`;
      return yield* Effect.tryPromise({
        try: () => Deno.readLink(link).then((target) => target.split("/").pop() || undefined),
        catch: (e) => e,
      }).pipe(
        Effect.catch((e) =>
          e instanceof Deno.errors.NotFound ? Effect.succeed(undefined) : Effect.fail(
            new DeviceError({
              pod: "-",
              resource: deviceId,
              reason: `cannot read ${link}: ${e instanceof Error ? e.message : e}`,
            }),
          )
        ),
      );
    });

  return { physicalFunction, driver };
}

export const makePodResourcesDevices = (options: PodResourcesOptions = {}) =>
  Effect.gen(function* () {
    const socket = options.socket ?? defaultPodResourcesSocket;
    const sysfs = options.sysfsRoot ?? "/sys";
    const timeoutMs = options.timeoutMs ?? 5_000;
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        Deno.createHttpClient({ proxy: { transport: "unix", path: socket }, http1: false, http2: true })
      ),
      (c) => Effect.sync(() => c.close()),
    );

    /** One unary call: the response message, or why there is none. */
    const call = (method: "Get" | "List", request: Uint8Array) =>
      Effect.tryPromise({
        try: async (signal): Promise<Uint8Array | CallFailure> => {
          const frame = new Uint8Array(5 + request.length);
          new DataView(frame.buffer).setUint32(1, request.length);
          frame.set(request, 5);
          const res = await fetch(`http://localhost/v1.PodResourcesLister/${method}`, {
            method: "POST",
            client,
            body: frame,
            headers: { "content-type": "application/grpc", te: "trailers" },
            signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
          });
          const body = new Uint8Array(await res.arrayBuffer());
          // An error comes as a "trailers-only" answer: the status is in the headers.
          const status = res.headers.get("grpc-status");
          if (res.status !== 200) return { code: undefined, reason: `HTTP ${res.status} from the kubelet` };
          if (status !== null && status !== "0") {
            const msg = res.headers.get("grpc-message") ?? "";
            let reason = msg;
            try {
              reason = decodeURIComponent(msg);
            } catch { /* keep it as sent */ }
            return { code: Number(status), reason: reason || `gRPC status ${status}` };
          }
          if (body.length < 5) return { code: undefined, reason: "the kubelet sent no response message" };
          const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
          if (body[0] !== 0) return { code: undefined, reason: "the kubelet sent a compressed message" };
          const len = view.getUint32(1);
          if (5 + len > body.length) return { code: undefined, reason: "the kubelet's response message is truncated" };
          return body.subarray(5, 5 + len);
        },
        catch: (e): CallFailure => ({
          code: undefined,
          reason: `cannot reach the kubelet PodResources API at ${socket}: ${e instanceof Error ? e.message : e}`,
        }),
      }).pipe(
        Effect.flatMap((r) => (r instanceof Uint8Array ? Effect.succeed(r) : Effect.fail(r))),
      );

    const decodePods = (buf: Uint8Array) =>
      decodePodResources(buf).pipe(
        Effect.mapError((e): CallFailure => ({
          code: undefined,
          reason: `malformed PodResources response: ${e.message}`,
        })),
      );

    /**
     * The kubelet rate-limits the API (burst 10, 100/s by default) and answers RESOURCE_EXHAUSTED beyond it: a node
     * starting many SR-IOV pods at once waits its turn briefly instead of failing their sandboxes.
     */
    const limited = (method: "Get" | "List", request: Uint8Array) =>
      call(method, request).pipe(
        Effect.retry({
          // Every ~50 ms for up to ~2 s: the bucket refills steadily, so waiting callers poll rather than back off.
          schedule: Schedule.spaced("50 millis").pipe(Schedule.jittered),
          times: 40,
          while: (e) => e.code === ResourceExhausted,
        }),
      );

    const podResources = (namespace: string, name: string) =>
      limited("Get", encodeStrings([[1, name], [2, namespace]])).pipe(
        Effect.flatMap(decodePods),
        Effect.map((pods) => pods.find((p) => p.namespace === namespace && p.name === name)),
        // Transport failures and the rate limit are final here; another error answer (Get unimplemented or
        // disabled, or an older kubelet that does not know the pod by name yet) is retried the GA way.
        Effect.catch((e) =>
          e.code === undefined || e.code === ResourceExhausted
            ? Effect.fail(e)
            : limited("List", new Uint8Array()).pipe(
              Effect.flatMap(decodePods),
              Effect.map((pods) => pods.find((p) => p.namespace === namespace && p.name === name)),
            )
        ),
      );

    const devices: PodDevicesService["devices"] = (pod, resource) =>
      podResources(pod.namespace, pod.name).pipe(
        Effect.mapError((e) => new DeviceError({ pod: `${pod.namespace}/${pod.name}`, resource, reason: e.reason })),
        Effect.flatMap((found) =>
          found ? Effect.succeed(devicesOf(found, resource)) : Effect.fail(
            new DeviceError({
              pod: `${pod.namespace}/${pod.name}`,
              resource,
              reason: "the kubelet's PodResources API does not list the pod",
            }),
          )
        ),
      );

    return { devices, ...pciDevices(sysfs) } satisfies PodDevicesService;
  });

export const layerPodResourcesDevices = (options: PodResourcesOptions = {}): Layer.Layer<PodDevices> =>
  Layer.effect(PodDevices, makePodResourcesDevices(options));
