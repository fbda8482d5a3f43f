// `fakeipam`: the IPAM plugin delegates call to receive the addresses danm already reserved for them.
// A thin client of the node daemon (see adapters/cniclient), like `danm`.
import { runThinClient } from "../adapters/cniclient/client.ts";

Deno.exit(await runThinClient("fakeipam"));
