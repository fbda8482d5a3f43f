// iproute2's `ip -json addr show` output, decoded with Schema (it is external input to the tests that observe the
// kernel through it): the fields the checks read.
import { Schema } from "effect";

export const IpAddr = Schema.Struct({
  ifname: Schema.String,
  addr_info: Schema.Array(Schema.Struct({
    family: Schema.String,
    local: Schema.String,
    prefixlen: Schema.Number,
    scope: Schema.String,
    tentative: Schema.optionalKey(Schema.Boolean),
    nodad: Schema.optionalKey(Schema.Boolean),
  })),
});
export type IpAddr = typeof IpAddr.Type;
