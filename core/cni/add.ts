// CNI ADD (danm-spec §4.1): every network of the pod attached in parallel, each within its own time limit; if any
// attachment fails, the whole pod is rolled back (interfaces, addresses, policy rules, delegate state, IPAM
// reservations, DanmEps) and one error names every failed network.
//
// Per attachment: reserve addresses (danm IPAM, when it owns them) → create the interface (built-in IPVLAN, or the
// delegate with danm's interface name and fakeipam carrying danm's addresses) → DanmEp and post-processing
// (sysctls, routes, policy routes) concurrently. Before anything is created the sandbox record lists the planned
// attachments, so even a crash mid-ADD leaves a DEL (or GC) that knows what to undo.
import { Effect } from "effect";
import type { NetworkStatusEntry } from "../api/annotations.ts";
import { isNetworkKind } from "../api/danm.ts";
import type { Pod } from "../api/k8s.ts";
import { NetworkDirectory, resolvePodAttachments, type SelectionError } from "../podnetworks/selection.ts";
import type { NamingScheme } from "../podnetworks/naming.ts";
import { Ipam, type Owner } from "../ipam/allocator.ts";
import { networkLabels } from "../ipam/metrics.ts";
import { Kube } from "../ports/kube.ts";
import { Netlink, type NetnsHandle, NetnsRef } from "../ports/netlink.ts";
import {
  chainAdd,
  type DelegateChain,
  loadStaticConfig,
  macvlanConfig,
  parseDelegateConfig,
  sriovConfig,
  withCniArgs,
  withIpam,
} from "./attach/delegate.ts";
import { createDpdkInterface, dpdkDrivers } from "./attach/dpdk.ts";
import { attachDeadline } from "./attach/slots.ts";
import { createIpvlan } from "./attach/ipvlan.ts";
import { findParent } from "./attach/parent.ts";
import { PodDevices } from "../ports/pod_devices.ts";
import { delSandbox, teardown, type TeardownItem } from "./del.ts";
import { buildEndpoint, createEndpoint, patchNetworkStatus } from "./endpoints.ts";
import { AttachmentError, attachmentsFailed, cniError, step, StepError } from "./errors.ts";
import type { DanmNetConf } from "./netconf.ts";
import {
  asksForAddress,
  type AttachmentPlan,
  fakeIpamSection,
  isV6,
  plainIp,
  planAttachment,
  ticketFakeIpamSection,
} from "./plan.ts";
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

/** What one attachment has done so far: what a rollback has to undo, whatever point it failed at. */
interface Progress {
  ipam?: AttachmentRecord["ipam"];
  delegate?: DelegateChain;
  delegateResult?: unknown;
  epName?: string;
  rules: RuleRecord[];
  addresses: string[];
  /** Links danm created in the pod beside the delegate's (the DPDK dummy and its VLAN). */
  ownLinks: string[];
}

interface Outcome {
  readonly result: Result;
  readonly status: NetworkStatusEntry;
  readonly record: AttachmentRecord;
}

interface AddContext {
  readonly inv: Invocation;
  readonly conf: DanmNetConf;
  readonly pod: Pod;
  readonly podRef: { readonly namespace: string; readonly name: string; readonly uid: string };
  readonly host: NetnsHandle;
  readonly podNs: NetnsHandle;
  readonly podNsRef: NetnsRef;
  /** device_pool attachments: their device ID, or why there is none. */
  readonly devices: ReadonlyMap<number, string | StepError>;
}

const cniArgsText = (args: Readonly<Record<string, string>>) =>
  Object.entries(args).map(([k, v]) => `${k}=${v}`).join(";");

const recordOf = (plan: AttachmentPlan, p: Progress, extra: Partial<AttachmentRecord> = {}): AttachmentRecord => ({
  index: plan.index,
  ifName: plan.ifName,
  network: plan.network,
  networkType: plan.networkType,
  backend: plan.backend._tag === "Ipvlan" ? "ipvlan" : "delegate",
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
  backend: plan.backend._tag === "Ipvlan" ? "ipvlan" : p.delegate ? "delegate" : "unknown",
  ...(p.delegate ? { delegate: p.delegate } : {}),
  ...(p.delegateResult !== undefined ? { delegateResult: p.delegateResult } : {}),
  // Released even when the reservation's outcome is unknown (interrupted): releasing by owner is idempotent.
  ...(plan.ipam ? { ipam: plan.ipam.ref } : {}),
  ...(p.epName ? { epName: p.epName } : {}),
  rules: p.rules,
  ownLinks: p.ownLinks,
});

/** The addresses of a delegate's result that sit on pod-side interfaces (all of them when it names none). */
const delegateAddresses = (r: Result): string[] =>
  r.ips.filter((ip) => ip.interface === undefined || r.interfaces[ip.interface]?.sandbox !== undefined)
    .map((ip) => ip.address);

const attachOne = (ctx: AddContext, plan: AttachmentPlan, p: Progress) =>
  Effect.gen(function* () {
    const rt = yield* CniRuntime;
    const cfg = rt.config;
    const ipam = yield* Ipam;
    const { podRef } = ctx;
    const owner: Owner = {
      namespace: podRef.namespace,
      pod: podRef.name,
      podUid: podRef.uid,
      sandbox: ctx.inv.containerId,
      iface: plan.ifName,
      node: cfg.nodeName,
    };
    let v4 = "", v6 = "";
    const reserve = Effect.gen(function* () {
      if (!plan.ipam) return;
      p.ipam = plan.ipam.ref;
      const network = yield* rt.withReservedIps(plan.ipam);
      const got = yield* ipam.allocate(network, owner, plan.ip, plan.ip6).pipe(step("reserve addresses"));
      v4 = got.v4 ?? "";
      v6 = got.v6 ?? "";
      p.addresses = [v4, v6].filter((a) => a !== "" && a !== "none");
    });
    const backend = plan.backend;
    // A delegate whose addresses danm reserves starts at once, with a ticket for fakeipam (tickets.ts): its process
    // starts overlap the reservation. Not SR-IOV: its DanmEp needs the device first, and the DPDK stand-in the
    // addresses.
    const pipelined = plan.ipam !== undefined && asksForAddress(plan) &&
      (backend._tag === "Macvlan" || backend._tag === "Static" || backend._tag === "Nad");
    if (!pipelined) yield* reserve;
    const invocation = {
      containerId: ctx.inv.containerId,
      netns: ctx.inv.netns,
      ifName: plan.ifName,
      cniArgs: cniArgsText(ctx.inv.args),
      cniPath: ctx.inv.path,
      path: cfg.delegatePath,
      socket: cfg.socketPath,
    };
    const version = ctx.conf.version;
    let device = plan.device;
    const kind = plan.network.kind;
    const epName = crypto.randomUUID();
    /** A VF bound to a DPDK driver: danm adds the kernel-visible stand-in after the delegate. */
    let dpdk = false;

    /** The delegate's list before danm's IPAM section went in (the record keeps it with the final addresses). */
    let delegateBase: DelegateChain | undefined;

    /** Creates the interface, a delegate with `ipamSection` if given; its CNI result. */
    const createInterface = (ipamSection: Record<string, unknown> | undefined) =>
      Effect.gen(function* () {
        if (backend._tag === "Ipvlan") {
          const out = yield* createIpvlan({
            host: ctx.host,
            pod: ctx.podNs,
            podRef: ctx.podNsRef,
            ifName: plan.ifName,
            parent: backend.parent,
            mtu: plan.mtu,
            addresses: p.addresses,
          });
          return {
            interfaces: [{
              name: plan.ifName,
              ...(out.mac ? { mac: out.mac } : {}),
              sandbox: ctx.inv.netns,
              mtu: out.mtu,
            }],
            ips: p.addresses.map((address) => ({ address, interface: 0 })),
            routes: [],
          } satisfies Result;
        }
        let chain: DelegateChain;
        switch (backend._tag) {
          case "Macvlan": {
            if (!backend.parent) {
              return yield* new StepError({
                operation: "choose the macvlan master",
                reason: "the network has neither host_device, vlan nor vxlan",
              });
            }
            const master = backend.parent.name;
            const parent = yield* findParent(ctx.host, backend.parent);
            chain = macvlanConfig({
              networkId: backend.networkId,
              master,
              mtu: plan.mtu ?? parent.mtu,
              cniVersion: version,
            });
            break;
          }
          case "Sriov": {
            const assigned = ctx.devices.get(plan.index);
            if (assigned === undefined || assigned instanceof StepError) {
              return yield* (assigned ?? new StepError({ operation: "allocate a device", reason: "none assigned" }));
            }
            device = assigned;
            const devices = yield* PodDevices;
            const master = yield* devices.physicalFunction(assigned).pipe(step(`find the PF of ${assigned}`));
            const driver = yield* devices.driver(assigned).pipe(step(`find the driver of ${assigned}`));
            dpdk = driver !== undefined && dpdkDrivers.has(driver);
            chain = sriovConfig({
              networkId: backend.networkId,
              master,
              deviceId: assigned,
              vlan: backend.vlan,
              cniVersion: version,
            });
            break;
          }
          case "Static":
            chain = yield* loadStaticConfig(ctx.conf.config.cniDir, backend.networkId, backend.networkType, version)
              .pipe(
                step("load the delegate configuration"),
              );
            break;
          case "Nad":
            if (!backend.config) {
              return yield* new StepError({
                operation: "read spec.config",
                reason: "the NetworkAttachmentDefinition has none",
              });
            }
            chain = yield* parseDelegateConfig(backend.config, plan.label, {
              name: plan.network.name,
              cniVersion: version,
            }).pipe(step("read spec.config"));
            break;
        }
        if (plan.cniArgs) chain = withCniArgs(chain, plan.cniArgs);
        delegateBase = chain;
        if (ipamSection) chain = withIpam(chain, ipamSection);
        p.delegate = chain;
        const out = yield* chainAdd(chain, invocation).pipe(step(`${chain.source} ADD`));
        p.delegateResult = out.raw;
        if (dpdk && device) {
          yield* createDpdkInterface({
            pod: ctx.podNs,
            ifName: plan.ifName,
            epName,
            vlan: backend._tag === "Sriov" ? backend.vlan : undefined,
            pci: device,
            mac: out.result.interfaces.find((i) => i.name === plan.ifName)?.mac,
            addresses: p.addresses,
            created: p.ownLinks,
          });
        }
        if (!plan.ipam) {
          // The delegate's own IPAM decided: record its addresses (DANM: the last of each family wins).
          p.addresses = delegateAddresses(out.result);
          v4 = p.addresses.filter((a) => !isV6(a)).at(-1) ?? "";
          v6 = p.addresses.filter(isV6).at(-1) ?? "";
        }
        return out.result;
      });

    /** The DanmEp (danm networks only; NAD attachments are reported through network-status). */
    const createEp = Effect.gen(function* () {
      if (!isNetworkKind(kind)) return;
      const name = epName;
      p.epName = name;
      yield* createEndpoint(buildEndpoint({
        name,
        pod: ctx.pod,
        node: cfg.nodeName,
        host: cfg.host,
        containerId: ctx.inv.containerId,
        netns: ctx.inv.netns,
        network: { kind, name: plan.network.name },
        networkType: plan.networkType,
        ifName: plan.ifName,
        address: v4 || (plan.ip === "none" ? "none" : ""),
        address6: v6 || (plan.ip6 === "none" ? "none" : ""),
        ...(plan.mtu === undefined ? {} : { mtu: plan.mtu }),
        ...(device ? { device } : {}),
        proutes: plan.proutes,
        proutes6: plan.proutes6,
      })).pipe(step("create the DanmEp"));
    });

    let result: Result;
    let post: { readonly rules: ReadonlyArray<RuleRecord> };
    const reservedSection = () => (p.addresses.length > 0 ? fakeIpamSection(p.addresses) : undefined);
    if (pipelined) {
      // Both run to their end whatever the other does, so the rollback knows what exists; a failed reservation is
      // reported before the delegate's failure it causes.
      const [reserved, created] = yield* rt.tickets.withTicket((ticket) =>
        Effect.all([
          reserve.pipe(
            Effect.tapError((e) => ticket.reject(e.message)),
            Effect.andThen(Effect.suspend(() => ticket.fulfil(p.addresses))),
            Effect.andThen(createEp),
            Effect.result,
          ),
          Effect.result(createInterface(ticketFakeIpamSection(ticket.id))),
        ], { concurrency: 2 })
      );
      if (reserved._tag === "Failure") return yield* reserved.failure;
      if (created._tag === "Failure") return yield* created.failure;
      result = created.success;
      // What DEL and CHECK replay: the addresses themselves, not a ticket that is gone.
      const section = reservedSection();
      if (delegateBase && section) p.delegate = withIpam(delegateBase, section);
      post = yield* postProcess(ctx.podNs, plan, p.addresses, false);
    } else if (plan.ipam && backend._tag !== "Sriov") {
      // danm's IPAM already fixed the addresses: the DanmEp need not wait for the interface.
      [, result] = yield* Effect.all([createEp, createInterface(reservedSection())], { concurrency: 2 });
      post = yield* postProcess(ctx.podNs, plan, p.addresses, backend._tag === "Ipvlan");
    } else {
      result = yield* createInterface(reservedSection());
      [, post] = yield* Effect.all([
        createEp,
        postProcess(ctx.podNs, plan, p.addresses, backend._tag === "Ipvlan"),
      ], { concurrency: 2 });
    }
    p.rules.push(...post.rules);
    const link = yield* ctx.podNs.link(plan.ifName).pipe(
      Effect.map((l) => l as { mac?: string; mtu: number } | undefined),
      Effect.catchTag("NetlinkNotFound", () => Effect.succeed(undefined)),
      step(`read ${plan.ifName}`),
    );
    const mac = link?.mac ?? result.interfaces.find((i) => i.name === plan.ifName)?.mac;
    const mtu = link?.mtu;
    const gateways = result.ips.flatMap((ip) => (ip.gateway ? [ip.gateway] : []));
    const status: NetworkStatusEntry = {
      name: plan.statusName,
      interface: plan.ifName,
      ips: p.addresses.map(plainIp),
      ...(mac ? { mac } : {}),
      ...(mtu === undefined ? {} : { mtu }),
      default: plan.isDefault,
      ...(gateways.length > 0 ? { gateway: gateways } : {}),
      ...(device ? { "device-info": { type: "pci", version: "1.1.0", pci: { "pci-address": device } } } : {}),
    };
    return { result, status, record: recordOf(plan, p) } satisfies Outcome;
  });

/** Device IDs for device_pool attachments, popped from the end of the kubelet's list (DANM's order). */
const assignDevices = (pod: { namespace: string; name: string }, plans: ReadonlyArray<AttachmentPlan>) =>
  Effect.gen(function* () {
    const out = new Map<number, string | StepError>();
    const byResource = new Map<string, AttachmentPlan[]>();
    for (const p of plans) {
      if (p.backend._tag !== "Sriov") continue;
      const resource = p.backend.resource;
      if (!resource) {
        out.set(p.index, new StepError({ operation: "allocate a device", reason: "the network has no device_pool" }));
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
          created: new Date().toISOString(),
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

        const outcome = yield* Effect.scoped(Effect.gen(function* () {
          const nl = yield* Netlink;
          const podNsRef = NetnsRef.path(inv.netns);
          const podNs = yield* nl.netns(podNsRef).pipe(
            Effect.mapError((e) =>
              cniError(`cannot enter the pod network namespace ${inv.netns}`, e.message, ErrorCode.invalidEnvironment)
            ),
          );
          const ctx: AddContext = { inv, conf, pod, podRef, host: nl.host, podNs, podNsRef, devices };
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
        })).pipe(
          // Only entering the namespace can fail here (attachments report through Effect.result): nothing was created.
          Effect.tapError(() => Effect.ignore(removeRecord(cfg.stateDir, inv.containerId))),
        );

        const failures = outcome.flatMap((r) => (r._tag === "Failure" ? [r.failure] : []));
        if (failures.length > 0) {
          const leftovers = yield* teardown({
            containerId: inv.containerId,
            netns: inv.netns,
            pod: podRef,
            cniPath: inv.path,
            cniArgs: cniArgsText(inv.args),
            items: plans.map((pl, i) => teardownItem(pl, progress[i])),
          });
          if (leftovers.length === 0) {
            yield* Effect.ignore(removeRecord(cfg.stateDir, inv.containerId));
          } else {
            yield* Effect.logWarning(
              `rollback of ${podLabel} left ${leftovers.length} step(s) for DEL/GC: ${
                leftovers.map((l) => l.message).join("; ")
              }`,
            );
            yield* Effect.ignore(writeRecord(cfg.stateDir, {
              ...planned,
              attachments: plans.map((pl, i) => recordOf(pl, progress[i])),
            }));
          }
          return yield* attachmentsFailed(`ADD of pod ${podLabel}`, failures, plans.length);
        }

        const done = outcome.map((r) => (r as { success: Outcome }).success);
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
