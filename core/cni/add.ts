// CNI ADD (danm-spec §4.1): every network of the pod attached in parallel, each within its own time limit; if any
// attachment fails, the whole pod is rolled back (interfaces, addresses, policy rules, delegate state, IPAM
// reservations, DanmEps) and one error names every failed network.
//
// Per attachment: reserve addresses (danm IPAM, when it owns them) → create the interface through its backend
// (core/cni/backends: built-in IPVLAN, or a delegate with danm's interface name and fakeipam carrying danm's
// addresses) → DanmEp and post-processing (sysctls, routes, policy routes) concurrently. Before anything is created the sandbox record lists the planned
// attachments, so even a crash mid-ADD leaves a DEL (or GC) that knows what to undo.
import { Clock, Effect } from "effect";
import type { NetworkStatusEntry } from "../api/annotations.ts";
import { isNetworkKind } from "../api/danm.ts";
import type { Pod } from "../api/k8s.ts";
import { NetworkDirectory, resolvePodAttachments, type SelectionError } from "../podnetworks/selection.ts";
import type { NamingScheme } from "../podnetworks/naming.ts";
import { Ipam, type Owner } from "../ipam/allocator.ts";
import { networkLabels } from "../ipam/metrics.ts";
import { Kube } from "../ports/kube.ts";
import { Netlink, NetnsRef } from "../ports/netlink.ts";
import { withIpam } from "./attach/delegate.ts";
import { attachDeadline } from "./attach/slots.ts";
import { PodDevices } from "../ports/pod_devices.ts";
import type { AddContext, Progress } from "./backends/backend.ts";
import { moduleOf } from "./backends/table.ts";
import { delSandbox, teardown, type TeardownItem } from "./del.ts";
import { buildEndpoint, createEndpoint, patchNetworkStatus } from "./endpoints.ts";
import { AttachmentError, attachmentsFailed, cniError, step, StepError } from "./errors.ts";
import type { DanmNetConf } from "./netconf.ts";
import { fakeIpamSection, isV6, plainIp, ticketFakeIpamSection } from "./addresses.ts";
import { asksForAddress, type AttachmentPlan, planAttachment } from "./plan.ts";
import { programPodPolicy } from "./policy.ts";
import { postProcess } from "./postprocess.ts";
import { CniError, encodeResult, ErrorCode, type Invocation, mergeResults, type Result } from "./protocol.ts";
import { type CniMetrics, CurrentCniMetrics, CurrentRequest } from "./metrics.ts";
import { CniRuntime, type CniRuntimeService } from "./runtime.ts";
import {
  type AttachmentRecord,
  readRecord,
  removeRecord,
  type RuleRecord,
  type SandboxRecord,
  validContainerId,
  writeRecord,
} from "./state.ts";
import { explainSelection } from "./select.ts";

interface Outcome {
  readonly result: Result;
  readonly status: NetworkStatusEntry;
  readonly record: AttachmentRecord;
}

const cniArgsText = (args: Readonly<Record<string, string>>) =>
  Object.entries(args).map(([k, v]) => `${k}=${v}`).join(";");

const recordOf = (plan: AttachmentPlan, p: Progress, extra: Partial<AttachmentRecord> = {}): AttachmentRecord => ({
  index: plan.index,
  ifName: plan.ifName,
  network: plan.network,
  networkType: plan.networkType,
  backend: moduleOf(plan.backend).builtIn ? "ipvlan" : "delegate",
  ...(p.ipam ? { ipam: p.ipam } : plan.ipam ? { ipam: plan.ipam.ref } : {}),
  ...(p.epName ? { epName: p.epName } : {}),
  ...(p.delegate ? { delegate: p.delegate } : {}),
  ...(p.delegateResult !== undefined ? { delegateResult: p.delegateResult } : {}),
  ...(p.addresses.length > 0 ? { addresses: p.addresses } : {}),
  ...(p.rules.length > 0 ? { rules: p.rules } : {}),
  ...(p.ownLinks.length > 0 ? { ownLinks: p.ownLinks } : {}),
  ...extra,
});

/** Teardown of an attachment, from its progress (rollback) — everything it may have started. */
const teardownItem = (plan: AttachmentPlan, p: Progress): TeardownItem => ({
  ifName: plan.ifName,
  label: plan.label,
  backend: moduleOf(plan.backend).builtIn ? "ipvlan" : p.delegate ? "delegate" : "unknown",
  ...(p.delegate ? { delegate: p.delegate } : {}),
  ...(p.delegateResult !== undefined ? { delegateResult: p.delegateResult } : {}),
  // Released even when the reservation's outcome is unknown (interrupted): releasing by owner is idempotent.
  ...(plan.ipam ? { ipam: plan.ipam.ref } : {}),
  ...(p.epName ? { epName: p.epName } : {}),
  rules: p.rules,
  ownLinks: p.ownLinks,
});

/** One attachment on its way: what its steps share. */
interface Attaching {
  readonly ctx: AddContext;
  readonly plan: AttachmentPlan;
  readonly p: Progress;
  readonly epName: string;
  /** The DanmEp's addresses: danm's reservation, else the last of each family the delegate gave (DANM's rule). */
  v4: string;
  v6: string;
  /** The device the attachment got (device pools). */
  device: string | undefined;
}

/** Reserves the attachment's addresses in danm's IPAM, when it owns them. */
const reserveAddresses = (a: Attaching) =>
  Effect.gen(function* () {
    const { ctx, plan, p } = a;
    if (!plan.ipam) return;
    const rt = yield* CniRuntime;
    const ipam = yield* Ipam;
    const owner: Owner = {
      namespace: ctx.podRef.namespace,
      pod: ctx.podRef.name,
      podUid: ctx.podRef.uid,
      sandbox: ctx.inv.containerId,
      iface: plan.ifName,
      node: rt.config.nodeName,
    };
    p.ipam = plan.ipam.ref;
    const network = yield* rt.withReservedIps(plan.ipam);
    const got = yield* ipam.allocate(network, owner, plan.ip, plan.ip6).pipe(step("reserve addresses"));
    a.v4 = got.v4 ?? "";
    a.v6 = got.v6 ?? "";
    p.addresses = [a.v4, a.v6].filter((x) => x !== "" && x !== "none");
  });

/** Creates the interface through its backend, a delegate with `ipamSection` if given; the CNI result. */
const createInterface = (a: Attaching, ipamSection: Record<string, unknown> | undefined) =>
  Effect.gen(function* () {
    const { ctx, plan, p } = a;
    const cfg = (yield* CniRuntime).config;
    const created = yield* moduleOf(plan.backend).create({
      add: ctx,
      plan,
      progress: p,
      epName: a.epName,
      ipamSection,
      invocation: {
        containerId: ctx.inv.containerId,
        netns: ctx.inv.netns,
        ifName: plan.ifName,
        cniArgs: cniArgsText(ctx.inv.args),
        cniPath: ctx.inv.path,
        path: cfg.delegatePath,
        socket: cfg.socketPath,
      },
    }, plan.backend);
    if (created.device) a.device = created.device;
    if (!plan.ipam) {
      a.v4 = p.addresses.filter((x) => !isV6(x)).at(-1) ?? "";
      a.v6 = p.addresses.filter(isV6).at(-1) ?? "";
    }
    return created;
  });

/** The DanmEp (danm networks only; NAD attachments are reported through network-status). */
const createEp = (a: Attaching) =>
  Effect.gen(function* () {
    const { ctx, plan } = a;
    const kind = plan.network.kind;
    if (!isNetworkKind(kind)) return;
    const cfg = (yield* CniRuntime).config;
    a.p.epName = a.epName;
    yield* createEndpoint(buildEndpoint({
      name: a.epName,
      pod: ctx.pod,
      node: cfg.nodeName,
      host: cfg.host,
      containerId: ctx.inv.containerId,
      netns: ctx.inv.netns,
      network: { kind, name: plan.network.name },
      networkType: plan.networkType,
      ifName: plan.ifName,
      address: a.v4 || (plan.ip === "none" ? "none" : ""),
      address6: a.v6 || (plan.ip6 === "none" ? "none" : ""),
      ...(plan.mtu === undefined ? {} : { mtu: plan.mtu }),
      ...(a.device ? { device: a.device } : {}),
      proutes: plan.proutes,
      proutes6: plan.proutes6,
    })).pipe(step("create the DanmEp"));
  });

/**
 * A delegate whose addresses danm reserves starts at once, with a ticket for fakeipam (tickets.ts): its process
 * start overlaps the reservation. Both run to their end whatever the other does, so the rollback knows what exists;
 * a failed reservation is reported before the delegate's failure it causes.
 */
const reserveAlongsideDelegate = (a: Attaching) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const [reserved, created] = yield* rt.tickets.withTicket((ticket) =>
      Effect.all([
        reserveAddresses(a).pipe(
          Effect.tapError((e) => ticket.reject(e.message)),
          Effect.andThen(Effect.suspend(() => ticket.fulfil(a.p.addresses))),
          Effect.andThen(createEp(a)),
          Effect.result,
        ),
        Effect.result(createInterface(a, ticketFakeIpamSection(ticket.id))),
      ], { concurrency: 2 })
    );
    if (reserved._tag === "Failure") return yield* reserved.failure;
    if (created._tag === "Failure") return yield* created.failure;
    // What DEL and CHECK replay: the addresses themselves, not a ticket that is gone.
    const section = reservedSection(a.p);
    if (created.success.delegateBase && section) a.p.delegate = withIpam(created.success.delegateBase, section);
    return created.success.result;
  });

const reservedSection = (p: Progress) => (p.addresses.length > 0 ? fakeIpamSection(p.addresses) : undefined);

/** The attachment's network-status entry, with the interface as the pod sees it now. */
const statusOf = (a: Attaching, result: Result) =>
  Effect.gen(function* () {
    const { plan } = a;
    const link = yield* a.ctx.podNs.link(plan.ifName).pipe(
      Effect.map((l) => l as { mac?: string; mtu: number } | undefined),
      Effect.catchTag("NetlinkNotFound", () => Effect.succeed(undefined)),
      step(`read ${plan.ifName}`),
    );
    const mac = link?.mac ?? result.interfaces.find((i) => i.name === plan.ifName)?.mac;
    const mtu = link?.mtu;
    const gateways = result.ips.flatMap((ip) => (ip.gateway ? [ip.gateway] : []));
    const device = a.device;
    return {
      name: plan.statusName,
      interface: plan.ifName,
      ips: a.p.addresses.map(plainIp),
      ...(mac ? { mac } : {}),
      ...(mtu === undefined ? {} : { mtu }),
      default: plan.isDefault,
      ...(gateways.length > 0 ? { gateway: gateways } : {}),
      ...(device ? { "device-info": { type: "pci", version: "1.1.0", pci: { "pci-address": device } } } : {}),
    } satisfies NetworkStatusEntry;
  });

/**
 * One attachment: addresses → interface → DanmEp and post-processing, overlapping where the backend allows — a
 * ticketed delegate starts alongside the reservation; with danm's addresses fixed, the DanmEp need not wait for the
 * interface unless the backend says it records what the interface got.
 */
const attachOne = (ctx: AddContext, plan: AttachmentPlan, p: Progress) =>
  Effect.gen(function* () {
    const backend = moduleOf(plan.backend);
    const a: Attaching = { ctx, plan, p, epName: crypto.randomUUID(), v4: "", v6: "", device: plan.device };
    let result: Result;
    let post: { readonly rules: ReadonlyArray<RuleRecord> };
    if (plan.ipam !== undefined && asksForAddress(plan) && backend.ticketed) {
      result = yield* reserveAlongsideDelegate(a);
      post = yield* postProcess(ctx.podNs, plan, p.addresses, backend.builtIn);
    } else {
      yield* reserveAddresses(a);
      const create = Effect.suspend(() => createInterface(a, reservedSection(p))).pipe(Effect.map((c) => c.result));
      if (plan.ipam && !backend.endpointAfterInterface) {
        [, result] = yield* Effect.all([createEp(a), create], { concurrency: 2 });
        post = yield* postProcess(ctx.podNs, plan, p.addresses, backend.builtIn);
      } else {
        result = yield* create;
        [, post] = yield* Effect.all([createEp(a), postProcess(ctx.podNs, plan, p.addresses, backend.builtIn)], {
          concurrency: 2,
        });
      }
    }
    p.rules.push(...post.rules);
    const status = yield* statusOf(a, result);
    return { result, status, record: recordOf(plan, p) } satisfies Outcome;
  });

/** Device IDs for attachments of device pools, popped from the end of the kubelet's list (DANM's order). */
const assignDevices = (pod: { namespace: string; name: string }, plans: ReadonlyArray<AttachmentPlan>) =>
  Effect.gen(function* () {
    const out = new Map<number, string | StepError>();
    const byResource = new Map<string, AttachmentPlan[]>();
    for (const p of plans) {
      const resource = moduleOf(p.backend).deviceResource(p.backend);
      if (resource === undefined) continue;
      if (resource instanceof StepError) {
        out.set(p.index, resource);
        continue;
      }
      byResource.set(resource, [...(byResource.get(resource) ?? []), p]);
    }
    if (byResource.size === 0) return out;
    const devices = yield* PodDevices;
    for (const [resource, users] of byResource) {
      const got = yield* Effect.result(devices.devices(pod, resource));
      const list = got._tag === "Success" ? [...got.success] : [];
      for (const u of users) {
        if (got._tag === "Failure") {
          out.set(u.index, new StepError({ operation: "allocate a device", reason: got.failure.message }));
          continue;
        }
        const id = list.pop();
        out.set(
          u.index,
          id ?? new StepError({
            operation: "allocate a device",
            reason: `there were no (more) ${resource} devices allocated for the pod; request one per interface`,
          }),
        );
      }
    }
    return out;
  });

const selectionFailure = (pod: string) => (e: SelectionError | CniError) =>
  e instanceof CniError ? e : new CniError({
    code: ErrorCode.invalidNetworkConfig,
    msg: `pod ${pod}: cannot tell which networks to attach`,
    details: e.message,
  });

/** Times one attachment into the attachment histogram, by network, backend and result. */
const timed = (metrics: CniMetrics | undefined, plan: AttachmentPlan) => <A, E, R>(e: Effect.Effect<A, E, R>) =>
  metrics === undefined ? e : Effect.suspend(() => {
    const started = performance.now();
    return e.pipe(
      Effect.onExit((exit) =>
        Effect.sync(() =>
          metrics.attachments.observe((performance.now() - started) / 1000, {
            ...networkLabels(plan.network),
            backend: plan.backend._tag.toLowerCase(),
            result: exit._tag === "Success" ? "success" : "error",
          })
        )
      ),
    );
  });

/** Every attachment at once, each within the attach timeout: each one's outcome (a failed one is not the call's). */
const attachAll = (
  add: Omit<AddContext, "host" | "podNs" | "podNsRef">,
  plans: ReadonlyArray<AttachmentPlan>,
  progress: ReadonlyArray<Progress>,
  metrics: CniMetrics | undefined,
) =>
  Effect.scoped(Effect.gen(function* () {
    const cfg = (yield* CniRuntime).config;
    const nl = yield* Netlink;
    const podNsRef = NetnsRef.path(add.inv.netns);
    const podNs = yield* nl.netns(podNsRef).pipe(
      Effect.mapError((e) =>
        cniError(`cannot enter the pod network namespace ${add.inv.netns}`, e.message, ErrorCode.invalidEnvironment)
      ),
    );
    const ctx: AddContext = { ...add, host: nl.host, podNs, podNsRef };
    return yield* Effect.forEach(plans, (plan, i) =>
      attachOne(ctx, plan, progress[i]).pipe(
        timed(metrics, plan),
        // Waits for delegate slots are the node's load, not this attachment's time (attach/slots.ts).
        attachDeadline(cfg.attachTimeoutMs),
        Effect.mapError((e) =>
          new AttachmentError({
            network: plan.label,
            iface: plan.ifName,
            operation: e.operation,
            reason: e.reason,
            ...(e.retriable ? { retriable: true } : {}),
          })
        ),
        Effect.result,
      ), { concurrency: "unbounded" });
  }));

/** Undoes what the attachments of a failed ADD did; what cannot be undone now stays recorded for DEL or GC. */
const rollBack = (planned: SandboxRecord, plans: ReadonlyArray<AttachmentPlan>, progress: ReadonlyArray<Progress>) =>
  Effect.gen(function* () {
    const cfg = (yield* CniRuntime).config;
    const leftovers = yield* teardown({
      containerId: planned.containerId,
      netns: planned.netns,
      pod: planned.pod,
      cniPath: planned.cniPath,
      cniArgs: planned.cniArgs,
      items: plans.map((pl, i) => teardownItem(pl, progress[i])),
    });
    if (leftovers.length === 0) {
      yield* Effect.ignore(removeRecord(cfg.stateDir, planned.containerId));
      return;
    }
    yield* Effect.logWarning(
      `rollback of ${planned.pod.namespace}/${planned.pod.name} left ${leftovers.length} step(s) for DEL/GC: ${
        leftovers.map((l) => l.message).join("; ")
      }`,
    );
    yield* Effect.ignore(writeRecord(cfg.stateDir, {
      ...planned,
      attachments: plans.map((pl, i) => recordOf(pl, progress[i])),
    }));
  });

/** The Event a failed ADD leaves on its pod: which networks failed and why (retries of the same failure: one Event). */
export const NetworkSetupFailed = "NetworkSetupFailed";

const setupFailedEvent = (rt: CniRuntimeService, metrics: CniMetrics | undefined, pod: Pod, e: CniError) =>
  Effect.suspend(() => {
    metrics?.events.inc({ reason: NetworkSetupFailed });
    return rt.events.record({
      object: {
        apiVersion: "v1",
        kind: "Pod",
        name: pod.metadata.name ?? "",
        ...(pod.metadata.namespace ? { namespace: pod.metadata.namespace } : {}),
        ...(pod.metadata.uid ? { uid: pod.metadata.uid } : {}),
      },
      type: "Warning",
      reason: NetworkSetupFailed,
      message: e.message,
      // The failing networks and what failed, without the parts a retry changes (sandbox, timings).
      aggregateKey: e.msg,
    });
  });

/** The CNI ADD command; the encoded result in the requested version. */
export const add = (inv: Invocation, conf: DanmNetConf) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const cfg = rt.config;
    const metrics = yield* CurrentCniMetrics;
    const namespace = inv.args.K8S_POD_NAMESPACE, name = inv.args.K8S_POD_NAME;
    if (!namespace || !name) {
      return yield* new CniError({
        code: ErrorCode.invalidEnvironment,
        msg: "danm needs K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS",
        details: "the runtime did not say which pod the sandbox is for",
      });
    }
    if (!validContainerId(inv.containerId)) {
      return yield* new CniError({
        code: ErrorCode.invalidEnvironment,
        msg: `invalid CNI_CONTAINERID "${inv.containerId.slice(0, 80)}"`,
        details: "container IDs consist of letters, digits, '_', '.' and '-'",
      });
    }
    const podLabel = `${namespace}/${name}`;
    /** The pod once read: a failure after that is an Event on it too. */
    let failedPod: Pod | undefined;
    return yield* rt.withSandboxLock(
      inv.containerId,
      Effect.gen(function* () {
        const pod = yield* rt.pod(namespace, name, inv.args.K8S_POD_UID).pipe(
          Effect.mapError((e) => cniError(`cannot read pod ${podLabel}`, e.message, ErrorCode.apiFailure)),
        );
        if (!pod) return yield* cniError(`pod ${podLabel} does not exist`, undefined, ErrorCode.apiFailure);
        failedPod = pod;
        const podRef = { namespace, name, uid: pod.metadata.uid ?? inv.args.K8S_POD_UID ?? "" };
        const scheme: NamingScheme = conf.config.namingScheme === "legacy" ? "legacy" : "";
        const podSel = { namespace, ...(pod.metadata.annotations ? { annotations: pod.metadata.annotations } : {}) };
        const resolved = yield* resolvePodAttachments(podSel, scheme).pipe(
          Effect.catchTag("SelectionError", (e) => Effect.flatMap(explainSelection(podSel, podLabel, e), Effect.fail)),
          Effect.catchTag("DirectoryError", (e) =>
            Effect.fail(cniError(`cannot look up networks`, e.message, ErrorCode.apiFailure))),
          Effect.mapError(selectionFailure(podLabel)),
          Effect.provideService(NetworkDirectory, rt.directory),
        );
        for (const w of resolved.warnings) {
          yield* Effect.logWarning(`pod ${podLabel}: ${w}`);
        }
        const plans = resolved.attachments.map((a) =>
          planAttachment(a, namespace)
        );
        const request = yield* CurrentRequest;
        if (request) request.networks = plans.map((pl) => `${pl.label} (${pl.ifName})`);

        // An earlier sandbox of this same pod that was never deleted (kubelet re-ADDs after a restart, DANM PR #216).
        const stale = new Set(
          (yield* rt.podEndpoints(podRef.uid))
            .filter((e) => e.spec.CID && e.spec.CID !== inv.containerId)
            .map((e) => e.spec.CID!),
        );
        if (stale.size > 0) {
          for (const cid of stale) {
            yield* Effect.logInfo(`pod ${podLabel}: cleaning up stale sandbox ${cid} before ADD of ${inv.containerId}`);
            yield* rt.withSandboxLock(
              cid,
              delSandbox({ containerId: cid, cniPath: inv.path, cniDir: conf.config.cniDir }),
            );
          }
        }
        // The same sandbox again (a runtime retrying an ADD it gave up on): start from a clean slate rather than
        // failing on interfaces that already exist.
        const previous = yield* Effect.orElseSucceed(readRecord(cfg.stateDir, inv.containerId), () => undefined);
        if (previous) {
          yield* Effect.logInfo(`pod ${podLabel}: ADD of known sandbox ${inv.containerId}: tearing the old state down`);
          yield* delSandbox({ containerId: inv.containerId, cniPath: inv.path, cniDir: conf.config.cniDir });
        }

        const progress: Progress[] = plans.map(() => ({ rules: [], addresses: [], ownLinks: [] }));
        const planned: SandboxRecord = {
          containerId: inv.containerId,
          netns: inv.netns,
          node: cfg.nodeName,
          created: new Date(yield* Clock.currentTimeMillis).toISOString(),
          pod: podRef,
          cniPath: [...inv.path],
          cniArgs: cniArgsText(inv.args),
          phase: "adding",
          attachments: plans.map((pl, i) => recordOf(pl, progress[i])),
        };
        yield* writeRecord(cfg.stateDir, planned).pipe(
          Effect.mapError((e) => cniError("cannot record the sandbox", e.message, ErrorCode.ioFailure)),
        );
        const devices = yield* assignDevices(podRef, plans);

        const outcome = yield* attachAll({ inv, conf, pod, podRef, devices }, plans, progress, metrics).pipe(
          // Only entering the namespace can fail here (attachments report through Effect.result): nothing was created.
          Effect.tapError(() => Effect.ignore(removeRecord(cfg.stateDir, inv.containerId))),
        );

        const failures = outcome.flatMap((r) => (r._tag === "Failure" ? [r.failure] : []));
        if (failures.length > 0) {
          yield* rollBack(planned, plans, progress);
          return yield* attachmentsFailed(`ADD of pod ${podLabel}`, failures, plans.length);
        }

        const done = outcome.map((r) => (r as { success: Outcome }).success);
        // The pod's network policy is in place before it is reported up (core/cni/policy.ts); else it fails closed.
        yield* programPodPolicy(pod, inv.netns, plans, done.map((o) => o.status)).pipe(
          Effect.tapError(() => rollBack(planned, plans, progress)),
        );
        const merged = mergeResults(done.map((o) => o.result));
        yield* writeRecord(cfg.stateDir, {
          ...planned,
          phase: "ready",
          attachments: done.map((o) => o.record),
          result: encodeResult(merged, "1.1.0"),
        }).pipe(Effect.catch((e) => Effect.logWarning(`pod ${podLabel}: ${e.message}`)));
        // Nobody waits for it (the runtime needs only the result), so it is written after the answer; a failure is
        // logged, not fatal (Multus #1407). Per pod in order, so a re-ADD's status is never overwritten by an older one.
        const kube = yield* Kube;
        yield* rt.background(
          `status/${podLabel}`,
          patchNetworkStatus(pod, done.map((o) => o.status)).pipe(
            Effect.provideService(Kube, kube),
            Effect.catch((e) => Effect.logWarning(`pod ${podLabel}: writing network-status failed: ${e.message}`)),
          ),
        );
        return encodeResult(merged, conf.version);
      }).pipe(
        // For `kubectl describe pod`; written after the answer, as nobody waits for it.
        Effect.tapError((e) =>
          failedPod ? rt.background(`events/${podLabel}`, setupFailedEvent(rt, metrics, failedPod, e)) : Effect.void
        ),
      ),
    );
  });
