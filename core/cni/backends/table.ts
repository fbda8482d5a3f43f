// The backends themselves, keyed by kind (kinds.ts names the kinds). `satisfies BackendTable` makes the compiler
// reject a kind without a module; CNI ADD and DEL reach a backend through `moduleOf`, never through a test of the
// kind.
import type { Backend } from "./backend.ts";
import type { BackendKind, BackendPlan } from "./kinds.ts";
import { ipvlan } from "./ipvlan/mod.ts";
import { macvlan } from "./macvlan/mod.ts";
import { nad } from "./nad/mod.ts";
import { sriov } from "./sriov/mod.ts";
import { staticDelegate } from "./static/mod.ts";

export type BackendTable = { readonly [K in BackendKind]: Backend<{ readonly _tag: K }> };

export const backends = {
  Ipvlan: ipvlan,
  Macvlan: macvlan,
  Sriov: sriov,
  Static: staticDelegate,
  Nad: nad,
} satisfies BackendTable;

/** The module of a planned attachment's backend. */
export const moduleOf = <P extends BackendPlan>(plan: P): Backend<P> =>
  // As specOf (kinds.ts): the table's type guarantees what TypeScript cannot relate.
  backends[plan._tag] as unknown as Backend<P>;
