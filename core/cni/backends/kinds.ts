// The kinds of backend and what is known of each without running anything (their spec.ts), keyed by kind.
// `satisfies SpecTable` makes the compiler reject a kind without a spec; planning, the webhook and IPAM ownership
// read this table (never the kind), and load none of the CNI's execution code with it. table.ts adds the modules.
import type { NetworkSpec } from "../../api/danm.ts";
import type { BackendSpec } from "./backend_spec.ts";
import { ipvlanSpec } from "./ipvlan/spec.ts";
import { macvlanSpec } from "./macvlan/spec.ts";
import { nadSpec } from "./nad/spec.ts";
import { sriovSpec } from "./sriov/spec.ts";
import { planStatic, staticSpec } from "./static/spec.ts";

/** Every backend danm has; the tables here and in table.ts must have exactly one entry for each. */
export type BackendKind = "Ipvlan" | "Macvlan" | "Sriov" | "Static" | "Nad";

export type SpecTable = { readonly [K in BackendKind]: BackendSpec<{ readonly _tag: K }> };

export const backendSpecs = {
  Ipvlan: ipvlanSpec,
  Macvlan: macvlanSpec,
  Sriov: sriovSpec,
  Static: staticSpec,
  Nad: nadSpec,
} satisfies SpecTable;

type PlanOf<S> = S extends BackendSpec<infer P> ? P : never;
/** What an attachment's backend needs, as planned (plan.ts): one member per kind. */
export type BackendPlan = { [K in BackendKind]: PlanOf<(typeof backendSpecs)[K]> }[BackendKind];

/** The spec of a planned attachment's backend. */
export const specOf = <P extends BackendPlan>(plan: P): BackendSpec<P> =>
  // TypeScript cannot relate the table's entry for `plan._tag` to the member P of the union: the table's type
  // (checked above) is what guarantees it.
  backendSpecs[plan._tag] as unknown as BackendSpec<P>;

/** NetworkType (lower case) → the backend naming it; built on first use (the specs' modules import its users). */
let byType: ReadonlyMap<string, BackendSpec<BackendPlan>> | undefined;

/** The backend of a danm network's NetworkType (case-insensitive; "" is ipvlan, unnamed types a static delegate). */
export const backendForType = (networkType: string | undefined): BackendSpec<BackendPlan> => {
  byType ??= new Map(
    (Object.values(backendSpecs) as ReadonlyArray<BackendSpec<BackendPlan>>).flatMap((m) =>
      m.networkTypes.map((type) => [type, m] as const)
    ),
  );
  return byType.get((networkType ?? "").toLowerCase()) ?? (staticSpec as BackendSpec<BackendPlan>);
};

/** The backend plan of a danm network (danm-spec §4.4). */
export const backendOf = (spec: NetworkSpec): BackendPlan =>
  // Only NADs have no plan from a NetworkType, and no NetworkType leads to them.
  (backendForType(spec.NetworkType).plan ?? planStatic)(spec);
