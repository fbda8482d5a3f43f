// `danm`: the CNI plugin the runtime execs. A thin client of the node daemon (see adapters/cniclient).
import { runThinClient } from "../adapters/cniclient/client.ts";

Deno.exit(await runThinClient("danm"));
