// What the delegate backends share: running the delegate chain a backend built.
import { Effect } from "effect";
import { chainAdd, type DelegateChain, withCniArgs, withIpam } from "../attach/delegate.ts";
import { step } from "../errors.ts";
import type { Result } from "../protocol.ts";
import type { AttachContext, Created } from "./backend.ts";

/** The addresses of a delegate's result that sit on pod-side interfaces (all of them when it names none). */
const delegateAddresses = (r: Result): string[] =>
  r.ips.filter((ip) => ip.interface === undefined || r.interfaces[ip.interface]?.sandbox !== undefined)
    .map((ip) => ip.address);

/**
 * Runs the chain a delegate backend built: with the pod's NPWG cni-args and danm's IPAM section, recorded in the
 * progress before it starts (a rollback DELs it whatever happens); without danm's IPAM, the delegate's addresses.
 */
export const runDelegate = (ctx: AttachContext, built: DelegateChain) =>
  Effect.gen(function* () {
    const { plan, progress } = ctx;
    const base = plan.cniArgs ? withCniArgs(built, plan.cniArgs) : built;
    const chain = ctx.ipamSection ? withIpam(base, ctx.ipamSection) : base;
    progress.delegate = chain;
    const out = yield* chainAdd(chain, ctx.invocation).pipe(step(`${chain.source} ADD`));
    progress.delegateResult = out.raw;
    // The delegate's own IPAM decided: record its addresses.
    if (!plan.ipam) progress.addresses = delegateAddresses(out.result);
    return { result: out.result, delegateBase: base } satisfies Created;
  });
