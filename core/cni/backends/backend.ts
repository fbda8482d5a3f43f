// What a backend is: the contract every folder under core/cni/backends/ fulfils (the way containernetworking/plugins
// keeps each plugin's loadConf/cmdAdd/cmdDel/cmdCheck in one folder): spec.ts what is known without running anything
// (kinds.ts tables those), mod.ts the backend itself (table.ts). The kind is chosen once, from the network's
// NetworkType (or because the network is a NetworkAttachmentDefinition); every place that acts on the choice — CNI
// ADD and DEL, `danmctl dry-run`, the webhook, IPAM ownership, the simulation — asks the tables instead of testing
// the kind, so a new kind is one folder plus its entries in the two tables, which the compiler demands.
//
// Teardown is not a member: a sandbox is undone from its record (state.ts), which outlives any code version, so it
// depends only on what the record says (a link danm made, a delegate chain to DEL, danm's own links), which
// `builtIn` and create's progress decide at ADD time.
import type { Effect } from "effect";
import type { Pod } from "../../api/k8s.ts";
import type { Fs } from "../../ports/filesystem.ts";
import type { Link, NetnsHandle, NetnsRef } from "../../ports/netlink.ts";
import type { PodDevices } from "../../ports/pod_devices.ts";
import type { Process } from "../../ports/process.ts";
import type { DelegateChain, Invocation as DelegateInvocation } from "../attach/delegate.ts";
import type { StepError } from "../errors.ts";
import type { DanmNetConf } from "../netconf.ts";
import type { AttachmentPlan } from "../plan.ts";
import type { Invocation, Result } from "../protocol.ts";
import type { AttachmentRecord, RuleRecord } from "../state.ts";
import type { BackendKind } from "./kinds.ts";
import type { BackendSpec } from "./backend_spec.ts";

/** What one attachment has done so far: what a rollback has to undo, whatever point it failed at. */
export interface Progress {
  ipam?: AttachmentRecord["ipam"];
  delegate?: DelegateChain;
  delegateResult?: unknown;
  epName?: string;
  rules: RuleRecord[];
  addresses: string[];
  /** Links danm created in the pod beside the delegate's (the DPDK dummy and its VLAN). */
  ownLinks: string[];
}

/** One CNI ADD: the pod and the namespaces its attachments go into. */
export interface AddContext {
  readonly inv: Invocation;
  readonly conf: DanmNetConf;
  readonly pod: Pod;
  readonly podRef: { readonly namespace: string; readonly name: string; readonly uid: string };
  readonly host: NetnsHandle;
  readonly podNs: NetnsHandle;
  readonly podNsRef: NetnsRef;
  /** Attachments of backends with a device pool: their device ID, or why there is none. */
  readonly devices: ReadonlyMap<number, string | StepError>;
}

/** What a backend's create is given for one attachment. */
export interface AttachContext {
  readonly add: AddContext;
  readonly plan: AttachmentPlan;
  readonly progress: Progress;
  /** The DanmEp's name (fixed before anything is created: DPDK names a link after it). */
  readonly epName: string;
  /** How a delegate of this attachment is run. */
  readonly invocation: DelegateInvocation;
  /** The fakeipam section carrying danm's addresses (or a ticket for them); absent = the delegate's own IPAM. */
  readonly ipamSection: Record<string, unknown> | undefined;
}

/** What create made. */
export interface Created {
  readonly result: Result;
  /** The device the attachment got (device pools), for the DanmEp and network-status. */
  readonly device?: string;
  /** The delegate's chain before danm's IPAM section went in (the record keeps it with the final addresses). */
  readonly delegateBase?: DelegateChain;
}

/** What DEL can undo of an attachment known only from its DanmEp (the sandbox record was lost). */
export interface Recovered {
  readonly backend: "ipvlan" | "delegate" | "unknown";
  readonly delegate?: DelegateChain;
}

/** The services a backend's effects may use. */
export type BackendServices = Fs | Process | PodDevices;

/** A backend: its spec, and what it does at ADD and DEL. */
export interface Backend<P extends { readonly _tag: BackendKind }> extends BackendSpec<P> {
  /** Creates the interface in the pod. */
  create(ctx: AttachContext, backend: P): Effect.Effect<Created, StepError, BackendServices>;
  /** DEL of an attachment without a record: what can be undone (ADD's delegate config, built again). */
  recover(backend: P, cniDir: string): Effect.Effect<Recovered, never, BackendServices>;
  /**
   * CHECK of an interface the backend built in: what is wrong with the link, if anything ("is a veth, not a macvlan").
   * Absent: its existence, state and addresses are all CHECK verifies.
   */
  readonly checkLink?: (link: Link) => string | undefined;
}
