// String formats shared by the danm API schemas (IP addresses, CIDRs, MACs) and the flattening of Schema issues
// into `path: message` lines for error messages.
//
// Address syntax follows Go's net.ParseIP / net.ParseCIDR, which DANM and the apiserver's `format: ipv4|ipv6|cidr`
// use: dotted-quad IPv4 without leading zeros (ipaddr.js alone also takes "10.1" or "0x0a.0.0.1"), IPv6 without a
// zone, and CIDRs whose address part may have host bits set ("10.0.0.5/24" is how DANM stores `lastIp`).
import { Schema, SchemaIssue } from "effect";
import ipaddr from "ipaddr.js";
import { openApi, type OpenApiFragment } from "./crdgen.ts";

export type IpFamily = "ipv4" | "ipv6";

export function isIPv4(s: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(s);
}

export function isIPv6(s: string): boolean {
  return s.includes(":") && !s.includes("%") && ipaddr.IPv6.isValid(s);
}

export function isIP(s: string, family?: IpFamily): boolean {
  return family === "ipv4" ? isIPv4(s) : family === "ipv6" ? isIPv6(s) : isIPv4(s) || isIPv6(s);
}

/** `addr/prefix` with the prefix in range for the family; host bits may be set. */
export function isCidr(s: string, family?: IpFamily): boolean {
  const slash = s.lastIndexOf("/");
  if (slash < 0) return false;
  const addr = s.slice(0, slash), prefix = s.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(prefix)) return false;
  const bits = Number(prefix);
  if (family !== "ipv6" && isIPv4(addr)) return bits <= 32;
  if (family !== "ipv4" && isIPv6(addr)) return bits <= 128;
  return false;
}

/** MAC-48, EUI-64 or 20-octet InfiniBand addresses in the spellings Go's net.ParseMAC accepts. */
export function isMac(s: string): boolean {
  const sizes = [6, 8, 20];
  for (const sep of [":", "-"]) {
    const parts = s.split(sep);
    if (sizes.includes(parts.length) && parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) return true;
  }
  const dotted = s.split(".");
  return sizes.includes(dotted.length * 2) && dotted.every((p) => /^[0-9a-fA-F]{4}$/.test(p));
}

function formatFilter(
  test: (s: string) => boolean,
  expected: string,
  fragment: OpenApiFragment,
): Schema.String {
  return Schema.String.check(Schema.makeFilter((s: string) => test(s), { expected, ...openApi(fragment) }));
}

// The apiserver validates `format` only for values it knows; `pattern` pins the family where the format cannot.
const ipv4Cidr: OpenApiFragment = { format: "cidr", pattern: "^[0-9]+\\." };
const ipv6Cidr: OpenApiFragment = { format: "cidr", pattern: ":" };

export const IPv4Address = formatFilter(isIPv4, "an IPv4 address", { format: "ipv4" });
export const IPv6Address = formatFilter(isIPv6, "an IPv6 address", { format: "ipv6" });
export const IPAddress = formatFilter((s) => isIP(s), "an IPv4 or IPv6 address", {
  anyOf: [{ format: "ipv4" }, { format: "ipv6" }],
});
export const IPv4Cidr = formatFilter((s) => isCidr(s, "ipv4"), "an IPv4 CIDR", ipv4Cidr);
export const IPv6Cidr = formatFilter((s) => isCidr(s, "ipv6"), "an IPv6 CIDR", ipv6Cidr);

/**
 * The same formats, also accepting "": DANM serializes unset members as empty strings
 * (`allocation_pool: {start: "", end: ""}`), so stored objects and manifests derived from them carry them.
 */
const emptyOr = (fragment: OpenApiFragment): OpenApiFragment => ({ anyOf: [{ maxLength: 0 }, fragment] });
export const EmptyOrIPv4Address = formatFilter(
  (s) => s === "" || isIPv4(s),
  "an IPv4 address or an empty string",
  emptyOr({ format: "ipv4" }),
);
export const EmptyOrIPv6Address = formatFilter(
  (s) => s === "" || isIPv6(s),
  "an IPv6 address or an empty string",
  emptyOr({ format: "ipv6" }),
);
export const EmptyOrIPv4Cidr = formatFilter(
  (s) => s === "" || isCidr(s, "ipv4"),
  "an IPv4 CIDR or an empty string",
  emptyOr(ipv4Cidr),
);
export const EmptyOrIPv6Cidr = formatFilter(
  (s) => s === "" || isCidr(s, "ipv6"),
  "an IPv6 CIDR or an empty string",
  emptyOr(ipv6Cidr),
);

/** One problem found while decoding: where (`spec.Options.vlan`, `[2].ip`) and what. */
export interface Problem {
  readonly path: string;
  readonly message: string;
}

export function renderPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else out += out === "" ? String(k) : `.${String(k)}`;
  }
  return out;
}

// Kubernetes' wording for the two structural failures, which users know from kubectl.
const leafHook: SchemaIssue.LeafHook = (issue) => {
  switch (issue._tag) {
    case "UnexpectedKey":
      return "unknown field";
    case "MissingKey":
      return "required field is missing";
    default:
      return SchemaIssue.defaultLeafHook(issue);
  }
};
const formatter = SchemaIssue.makeFormatterStandardSchemaV1({ leafHook });

/** One failing leaf of a Schema issue tree, with its path as segments. */
export interface IssueLeaf {
  readonly segments: ReadonlyArray<PropertyKey>;
  readonly message: string;
}

export function issueLeaves(issue: SchemaIssue.Issue): IssueLeaf[] {
  return formatter(issue).issues.map((i) => ({
    segments: (i.path ?? []).map((p) => typeof p === "object" ? p.key : p),
    message: i.message,
  }));
}

/** Flattens a Schema issue tree into one {@link Problem} per failing leaf. */
export function problemsOf(issue: SchemaIssue.Issue): Problem[] {
  return issueLeaves(issue).map((l) => ({ path: renderPath(l.segments), message: l.message }));
}

export function renderProblems(problems: ReadonlyArray<Problem>): string {
  return problems.map((p) => p.path ? `${p.path}: ${p.message}` : p.message).join("; ");
}
