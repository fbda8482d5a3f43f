// A NetworkAttachmentDefinition at work: the delegate configured by the NAD's spec.config.
import { Effect } from "effect";
import { parseDelegateConfig } from "../../attach/delegate.ts";
import { step, StepError } from "../../errors.ts";
import type { Backend } from "../backend.ts";
import { runDelegate } from "../common.ts";
import { type NadPlan, nadSpec } from "./spec.ts";

export const nad: Backend<NadPlan> = {
  ...nadSpec,
  create: (ctx, backend) =>
    Effect.gen(function* () {
      if (!backend.config) {
        return yield* new StepError({
          operation: "read spec.config",
          reason: "the NetworkAttachmentDefinition has none",
        });
      }
      const chain = yield* parseDelegateConfig(backend.config, ctx.plan.label, {
        name: ctx.plan.network.name,
        cniVersion: ctx.add.conf.version,
      }).pipe(step("read spec.config"));
      return yield* runDelegate(ctx, chain);
    }),
  // A NAD attachment has no DanmEp, so DEL never has to rebuild one from it.
  recover: () => Effect.succeed({ backend: "unknown" }),
};
