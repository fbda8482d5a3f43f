// The static delegate at work: the plugin configured by <cniDir>/<NetworkID>.conf (or .conflist).
import { Effect } from "effect";
import { loadStaticConfig } from "../../attach/delegate.ts";
import { step } from "../../errors.ts";
import { latestVersion } from "../../protocol.ts";
import type { Backend } from "../backend.ts";
import { runDelegate } from "../common.ts";
import { type StaticPlan, staticSpec } from "./spec.ts";

export const staticDelegate: Backend<StaticPlan> = {
  ...staticSpec,
  create: (ctx, backend) =>
    Effect.gen(function* () {
      const chain = yield* loadStaticConfig(
        ctx.add.conf.config.cniDir,
        backend.networkId,
        backend.networkType,
        ctx.add.conf.version,
      ).pipe(step("load the delegate configuration"));
      return yield* runDelegate(ctx, chain);
    }),
  // The node's config file as ADD loaded it, if it is still there.
  recover: (backend, cniDir) =>
    loadStaticConfig(cniDir, backend.networkId, backend.networkType, latestVersion).pipe(
      Effect.map((delegate) => ({ backend: "delegate" as const, delegate })),
      Effect.orElseSucceed(() => ({ backend: "unknown" as const })),
    ),
};
