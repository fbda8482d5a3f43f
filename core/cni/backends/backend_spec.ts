// What is known of a backend without running anything (each folder's spec.ts): planning, the webhook and IPAM
// ownership need only this, through kinds.ts — so its imports stay clear of the CNI's execution code, which the
// webhook must not load (the RBAC check reads every module an entry point imports, types included).
import type { Network, NetworkSpec } from "../../api/danm.ts";
import type { Problem } from "../../webhook/problems.ts";
import type { StepError } from "../errors.ts";
import type { BackendKind } from "./kinds.ts";

/** What `danmctl dry-run` shows of a backend. */
export interface Description {
  readonly backend: string;
  /** The host device the interface hangs off. */
  readonly parent?: string;
}

/**
 * What is known of a backend without running anything. Members are methods so that a spec typed for its own plan
 * (`BackendSpec<IpvlanPlan>`) fits the tables' `BackendSpec<{ _tag: "Ipvlan" }>`.
 */
export interface BackendSpec<P extends { readonly _tag: BackendKind }> {
  /** NetworkTypes (lower case) of the danm networks it serves; the static delegate serves every type nobody names. */
  readonly networkTypes: ReadonlyArray<string>;
  /**
   * danm makes the interface or generates the delegate's config: its IPAM always reserves the addresses (spec §4.6),
   * and with vlan/vxlan the NetworkID names host interfaces (webhook V14).
   */
  readonly generated: boolean;
  /** danm creates the interface itself (and deletes it on teardown); otherwise a delegate plugin does. */
  readonly builtIn: boolean;
  /** The delegate may start before danm's reservation: fakeipam then waits on a ticket for the addresses. */
  readonly ticketed: boolean;
  /** The DanmEp waits for the interface (it records the device create found). */
  readonly endpointAfterInterface: boolean;
  /** The plan of a danm network of one of its networkTypes; absent for NADs (planned from the NAD, in plan.ts). */
  readonly plan: ((spec: NetworkSpec) => P) | undefined;
  /** Admission: what is wrong with a network of this backend (webhook, danm-spec §7.3). */
  validate(net: Network): ReadonlyArray<Problem>;
  /** The device pool the attachment takes a device from, if the backend uses one. */
  deviceResource(backend: P): string | undefined | StepError;
  describe(backend: P): Description;
}
