// What a MultiNetworkPolicy means, checked field by field (the wire shape is Schema's; this is NetworkPolicy's
// validation, as the apiserver does it for networking.k8s.io/v1, plus the policy-for annotation). Pure: the webhook
// refuses `problems` and passes `warnings` on (AdmissionReview warnings), each naming the field, e.g.
// `spec.ingress[0].from[1].ipBlock.except[0]: "10.1.0.0/16" is not inside cidr 10.0.0.0/16`.
// Whether the named networks exist needs the cluster: `policyNetworkRefs` hands them to the caller.
import { Effect } from "effect";
import ipaddr from "ipaddr.js";
import { isCidr } from "../api/formats.ts";
import {
  type LabelSelector,
  type MultiNetworkPolicy,
  parsePolicyFor,
  PolicyForAnnotation,
  type PolicyNetworkRef,
  type PolicyPeer,
  type PolicyPort,
} from "../api/netpol.ts";

export interface PolicyProblem {
  /** JSON path of the offending field, e.g. `spec.ingress[0].ports[1].endPort`. */
  readonly field: string;
  /** Short identifier of the rule. */
  readonly rule: string;
  readonly message: string;
}

export interface PolicyValidation {
  readonly problems: ReadonlyArray<PolicyProblem>;
  /** Admitted, but the user should know (a policy that polices nothing, rules that are ignored). */
  readonly warnings: ReadonlyArray<PolicyProblem>;
}

export const policyForField = `metadata.annotations[${PolicyForAnnotation}]`;

const issue = (field: string, rule: string, message: string): PolicyProblem => ({ field, rule, message });

// ---- Labels (apimachinery's validation.IsQualifiedName / IsValidLabelValue) ----------------------------------------

const labelName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a label key (`[prefix/]name`), or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const parts = key.split("/");
  if (parts.length > 2) return `"${key}" has more than one "/"`;
  const [prefix, name] = parts.length === 2 ? parts : [undefined, parts[0]];
  if (prefix !== undefined && (prefix === "" || prefix.length > 253 || !dnsSubdomain.test(prefix))) {
    return `the prefix of "${key}" must be a DNS subdomain (lower case, at most 253 characters)`;
  }
  if (name.length === 0 || name.length > 63 || !labelName.test(name)) {
    return `"${key}" is not a label key: the name part must be 1-63 characters [A-Za-z0-9_.-], alphanumeric at both ends`;
  }
  return undefined;
}

/** Why `value` is not a label value, or undefined ("" is a value). */
export function labelValueProblem(value: string): string | undefined {
  if (value === "" || (value.length <= 63 && labelName.test(value))) return undefined;
  return `"${value}" is not a label value: at most 63 characters [A-Za-z0-9_.-], alphanumeric at both ends`;
}

function selectorProblems(selector: LabelSelector, at: string): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    const keyProblem = labelKeyProblem(key);
    if (keyProblem) out.push(issue(`${at}.matchLabels`, "label-key", keyProblem));
    const valueProblem = labelValueProblem(value);
    if (valueProblem) out.push(issue(`${at}.matchLabels[${key}]`, "label-value", valueProblem));
  }
  for (const [i, e] of (selector.matchExpressions ?? []).entries()) {
    const here = `${at}.matchExpressions[${i}]`;
    const keyProblem = labelKeyProblem(e.key);
    if (keyProblem) out.push(issue(`${here}.key`, "label-key", keyProblem));
    const values = e.values ?? [];
    if (e.operator === "In" || e.operator === "NotIn") {
      if (values.length === 0) {
        out.push(issue(`${here}.values`, "selector-values", `must be non-empty for operator ${e.operator}`));
      }
      for (const [j, v] of values.entries()) {
        const valueProblem = labelValueProblem(v);
        if (valueProblem) out.push(issue(`${here}.values[${j}]`, "label-value", valueProblem));
      }
    } else if (e.operator === "Exists" || e.operator === "DoesNotExist") {
      if (values.length > 0) {
        out.push(issue(`${here}.values`, "selector-values", `must be empty for operator ${e.operator}`));
      }
    } else {
      out.push(
        issue(`${here}.operator`, "selector-operator", `"${e.operator}" is not In, NotIn, Exists or DoesNotExist`),
      );
    }
  }
  return out;
}

// ---- Peers ---------------------------------------------------------------------------------------------------------

const familyOf = (cidr: string) => (cidr.includes(":") ? "IPv6" : "IPv4");

function ipBlockProblems(cidr: string, except: ReadonlyArray<string>, at: string): PolicyProblem[] {
  if (!isCidr(cidr)) return [issue(`${at}.cidr`, "cidr", `"${cidr}" is not a CIDR (address/prefix length)`)];
  const [net, bits] = ipaddr.parseCIDR(cidr);
  const out: PolicyProblem[] = [];
  for (const [i, e] of except.entries()) {
    const here = `${at}.except[${i}]`;
    if (!isCidr(e)) {
      out.push(issue(here, "cidr", `"${e}" is not a CIDR (address/prefix length)`));
      continue;
    }
    if (familyOf(e) !== familyOf(cidr)) {
      out.push(issue(here, "except-family", `"${e}" is ${familyOf(e)} but cidr ${cidr} is ${familyOf(cidr)}`));
      continue;
    }
    const [addr, exceptBits] = ipaddr.parseCIDR(e);
    // NetworkPolicy's rule: a strict subset (the whole cidr excepted would be an ipBlock matching nothing).
    if (exceptBits <= bits || !addr.match(net, bits)) {
      out.push(issue(here, "except-inside-cidr", `"${e}" is not inside cidr ${cidr}`));
    }
  }
  return out;
}

function peerProblems(peer: PolicyPeer, at: string): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  const selectors = [["podSelector", peer.podSelector], ["namespaceSelector", peer.namespaceSelector]] as const;
  const hasSelector = selectors.some(([, s]) => s != null);
  if (peer.ipBlock != null) {
    if (hasSelector) {
      out.push(issue(at, "peer-exclusive", "ipBlock may not be combined with podSelector or namespaceSelector"));
    }
    out.push(...ipBlockProblems(peer.ipBlock.cidr, peer.ipBlock.except ?? [], `${at}.ipBlock`));
  } else if (!hasSelector) {
    out.push(issue(at, "peer-empty", "must name a podSelector, a namespaceSelector or an ipBlock"));
  }
  for (const [name, s] of selectors) if (s != null) out.push(...selectorProblems(s, `${at}.${name}`));
  return out;
}

// ---- Ports ---------------------------------------------------------------------------------------------------------

/** IANA_SVC_NAME, as a container port's name: 1-15 of [a-z0-9-], a letter somewhere, no "-" at the ends or twice. */
export function isPortName(name: string): boolean {
  return name.length >= 1 && name.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) &&
    /[a-z]/.test(name) && !name.includes("--");
}

const isPortNumber = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;

function portProblems(p: PolicyPort, at: string): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  const port = p.port;
  if (typeof port === "number" && !isPortNumber(port)) {
    out.push(issue(`${at}.port`, "port-range", `${port} is not a port number (1-65535)`));
  } else if (typeof port === "string" && !isPortName(port)) {
    out.push(
      issue(
        `${at}.port`,
        "port-name",
        `"${port}" is not a port name (IANA_SVC_NAME: 1-15 lower-case letters, digits and "-", with a letter)`,
      ),
    );
  }
  if (p.endPort != null) {
    if (typeof port !== "number") {
      out.push(issue(`${at}.endPort`, "end-port", "requires a numeric port (not a named port, not absent)"));
    } else if (!isPortNumber(p.endPort)) {
      out.push(issue(`${at}.endPort`, "port-range", `${p.endPort} is not a port number (1-65535)`));
    } else if (p.endPort < port) {
      out.push(issue(`${at}.endPort`, "end-port", `${p.endPort} is less than port ${port}`));
    }
  }
  return out;
}

// ---- The policy ----------------------------------------------------------------------------------------------------

function rulesProblems(
  rules: ReadonlyArray<{ ports?: ReadonlyArray<PolicyPort> | null; peers?: ReadonlyArray<PolicyPeer> | null }>,
  at: string,
  peersName: "from" | "to",
): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  for (const [i, rule] of rules.entries()) {
    for (const [j, p] of (rule.ports ?? []).entries()) out.push(...portProblems(p, `${at}[${i}].ports[${j}]`));
    for (const [j, peer] of (rule.peers ?? []).entries()) {
      out.push(...peerProblems(peer, `${at}[${i}].${peersName}[${j}]`));
    }
  }
  return out;
}

/** The policy-for annotation: unparsable is a problem; absent or empty polices nothing (a warning). */
function annotationCheck(policy: MultiNetworkPolicy): PolicyValidation {
  const value = policy.metadata.annotations?.[PolicyForAnnotation];
  if (value === undefined || value.trim() === "") {
    return {
      problems: [],
      warnings: [issue(policyForField, "no-networks", "absent or empty: the policy applies to no network")],
    };
  }
  const parsed = Effect.runSync(Effect.result(parsePolicyFor(value)));
  if (parsed._tag === "Failure") {
    return { problems: [issue(policyForField, "policy-for", parsed.failure.message)], warnings: [] };
  }
  return { problems: [], warnings: [] };
}

/** Every problem and warning of a decoded policy, in field order. */
export function validatePolicy(policy: MultiNetworkPolicy): PolicyValidation {
  const annotation = annotationCheck(policy);
  const spec = policy.spec;
  if (spec === undefined) {
    return {
      problems: [...annotation.problems, issue("spec", "spec", "Required value")],
      warnings: annotation.warnings,
    };
  }
  const problems: PolicyProblem[] = [...annotation.problems, ...selectorProblems(spec.podSelector, "spec.podSelector")];
  const warnings: PolicyProblem[] = [...annotation.warnings];
  const ingress = spec.ingress ?? [], egress = spec.egress ?? [];
  problems.push(...rulesProblems(ingress.map((r) => ({ ports: r.ports, peers: r.from })), "spec.ingress", "from"));
  problems.push(...rulesProblems(egress.map((r) => ({ ports: r.ports, peers: r.to })), "spec.egress", "to"));
  const types = spec.policyTypes ?? [];
  for (const [i, t] of types.entries()) {
    if (types.indexOf(t) !== i) problems.push(issue(`spec.policyTypes[${i}]`, "policy-types", `duplicate "${t}"`));
  }
  if (types.length > 0) {
    if (!types.includes("Ingress") && ingress.length > 0) {
      warnings.push(issue("spec.ingress", "ignored-rules", "ignored: policyTypes does not include Ingress"));
    }
    if (!types.includes("Egress") && egress.length > 0) {
      warnings.push(issue("spec.egress", "ignored-rules", "ignored: policyTypes does not include Egress"));
    }
  }
  return { problems, warnings };
}

/** The networks a policy names (none when the annotation is absent or unparsable: validatePolicy reports that). */
export function policyNetworkRefs(policy: MultiNetworkPolicy): ReadonlyArray<PolicyNetworkRef> {
  const value = policy.metadata.annotations?.[PolicyForAnnotation];
  if (value === undefined || value.trim() === "") return [];
  const parsed = Effect.runSync(Effect.result(parsePolicyFor(value)));
  return parsed._tag === "Success" ? parsed.success : [];
}

/** `field: message`, the way the webhook shows a warning. */
export const renderPolicyProblem = (p: PolicyProblem): string => `${p.field}: ${p.message}`;
