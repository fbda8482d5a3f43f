// validatePolicy: each of NetworkPolicy's rules (and the policy-for annotation) refused or warned about with the
// exact field path; the NPWG examples pass clean.
import { Schema } from "effect";
import { MultiNetworkPolicy, PolicyForAnnotation } from "../../../core/api/netpol.ts";
import {
  isPortName,
  labelKeyProblem,
  labelValueProblem,
  policyNetworkRefs,
  renderPolicyProblem,
  validatePolicy,
} from "../../../core/netpol/validate.ts";
import { npwgExamples } from "../../fixtures/netpol/examples.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const decode = Schema.decodeUnknownSync(MultiNetworkPolicy);
/** `null`: no policy-for annotation. */
const policyWith = (spec: unknown, annotation: string | null = "net1") =>
  decode({
    metadata: {
      name: "p",
      namespace: "ns1",
      ...(annotation === null ? {} : { annotations: { [PolicyForAnnotation]: annotation } }),
    },
    spec,
  });
const problems = (spec: unknown, annotation?: string | null) =>
  validatePolicy(policyWith(spec, annotation)).problems.map(renderPolicyProblem);
const warnings = (spec: unknown, annotation?: string | null) =>
  validatePolicy(policyWith(spec, annotation)).warnings.map(renderPolicyProblem);
const ingressFrom = (...from: unknown[]) => ({ podSelector: {}, ingress: [{ from }] });
const ingressPorts = (...ports: unknown[]) => ({ podSelector: {}, ingress: [{ ports }] });

Deno.test("validate: the NPWG examples have no problem and no warning", () => {
  for (const example of npwgExamples) {
    assertEquals(validatePolicy(decode(example)), { problems: [], warnings: [] }, String(example.metadata));
  }
});

Deno.test("validate: ipBlock cidr and except — syntax (Go's rules), inside cidr, same family", () => {
  assertEquals(problems(ingressFrom({ ipBlock: { cidr: "10.0.0.0/33" } })), [
    'spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a CIDR (address/prefix length)',
  ]);
  assertEquals(problems(ingressFrom({ ipBlock: { cidr: "010.0.0.0/8" } })).length, 1, "no leading zeros");
  assertEquals(problems(ingressFrom({ ipBlock: { cidr: "10.0.0.1" } })).length, 1, "a prefix length is required");
  assertEquals(
    problems(ingressFrom(
      { podSelector: {} },
      {
        ipBlock: {
          cidr: "10.0.0.0/16",
          except: ["10.1.0.0/16", "10.0.0.0/16", "fd00::/64", "10.0.1.0/x", "10.0.2.0/24"],
        },
      },
    )),
    [
      'spec.ingress[0].from[1].ipBlock.except[0]: "10.1.0.0/16" is not inside cidr 10.0.0.0/16',
      'spec.ingress[0].from[1].ipBlock.except[1]: "10.0.0.0/16" is not inside cidr 10.0.0.0/16',
      'spec.ingress[0].from[1].ipBlock.except[2]: "fd00::/64" is IPv6 but cidr 10.0.0.0/16 is IPv4',
      'spec.ingress[0].from[1].ipBlock.except[3]: "10.0.1.0/x" is not a CIDR (address/prefix length)',
    ],
  );
  assertEquals(problems(ingressFrom({ ipBlock: { cidr: "2001:db8::/32", except: ["2001:db9::/48"] } })), [
    'spec.ingress[0].from[0].ipBlock.except[0]: "2001:db9::/48" is not inside cidr 2001:db8::/32',
  ]);
  // Host bits in cidr are allowed (Go's ParseCIDR), and the except is compared with the network.
  assertEquals(problems(ingressFrom({ ipBlock: { cidr: "10.0.0.5/16", except: ["10.0.3.0/24"] } })), []);
});

Deno.test("validate: a peer is an ipBlock or selectors, never both, never nothing", () => {
  assertEquals(problems(ingressFrom({ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }, {})), [
    "spec.ingress[0].from[0]: ipBlock may not be combined with podSelector or namespaceSelector",
    "spec.ingress[0].from[1]: must name a podSelector, a namespaceSelector or an ipBlock",
  ]);
  assertEquals(problems({ podSelector: {}, egress: [{ to: [{ namespaceSelector: {}, podSelector: {} }] }] }), []);
});

Deno.test("validate: ports — number range, IANA_SVC_NAME names, endPort only after a numeric port and not below it", () => {
  assertEquals(
    problems(ingressPorts(
      { port: 0 },
      { port: 65536 },
      { port: 80.5 },
      { port: "HTTP" },
      { port: "80" },
      { port: "web-", protocol: "UDP" },
      { port: "http" },
      { port: 443 },
    )),
    [
      "spec.ingress[0].ports[0].port: 0 is not a port number (1-65535)",
      "spec.ingress[0].ports[1].port: 65536 is not a port number (1-65535)",
      "spec.ingress[0].ports[2].port: 80.5 is not a port number (1-65535)",
      'spec.ingress[0].ports[3].port: "HTTP" is not a port name (IANA_SVC_NAME: 1-15 lower-case letters, digits and "-", with a letter)',
      'spec.ingress[0].ports[4].port: "80" is not a port name (IANA_SVC_NAME: 1-15 lower-case letters, digits and "-", with a letter)',
      'spec.ingress[0].ports[5].port: "web-" is not a port name (IANA_SVC_NAME: 1-15 lower-case letters, digits and "-", with a letter)',
    ],
  );
  assertEquals(
    problems({
      podSelector: {},
      egress: [{
        ports: [
          { port: "http", endPort: 90 },
          { endPort: 90 },
          { port: 100, endPort: 90 },
          { port: 1, endPort: 70000 },
          { port: 80, endPort: 80 },
        ],
      }],
    }),
    [
      "spec.egress[0].ports[0].endPort: requires a numeric port (not a named port, not absent)",
      "spec.egress[0].ports[1].endPort: requires a numeric port (not a named port, not absent)",
      "spec.egress[0].ports[2].endPort: 90 is less than port 100",
      "spec.egress[0].ports[3].endPort: 70000 is not a port number (1-65535)",
    ],
  );
  for (const ok of ["http", "sip", "x", "h2c", "web-8080", "a1234567890bcde"]) assert(isPortName(ok), ok);
  for (const bad of ["", "8080", "a--b", "-ab", "ab-", "a1234567890bcdef", "Http", "a_b"]) {
    assert(!isPortName(bad), bad);
  }
});

Deno.test("validate: label selectors — operators and their values, label keys and values", () => {
  assertEquals(
    problems({
      podSelector: {
        matchLabels: { "app": "ok", "bad key": "v", "x": "-bad" },
        matchExpressions: [
          { key: "a", operator: "In" },
          { key: "a", operator: "NotIn", values: [] },
          { key: "a", operator: "Exists", values: ["x"] },
          { key: "a", operator: "DoesNotExist", values: [] },
          { key: "a", operator: "in", values: ["x"] },
          { key: "a/b/c", operator: "Exists" },
          { key: "a", operator: "In", values: ["ok", "not ok"] },
        ],
      },
    }),
    [
      'spec.podSelector.matchLabels: "bad key" is not a label key: the name part must be 1-63 characters [A-Za-z0-9_.-], alphanumeric at both ends',
      'spec.podSelector.matchLabels[x]: "-bad" is not a label value: at most 63 characters [A-Za-z0-9_.-], alphanumeric at both ends',
      "spec.podSelector.matchExpressions[0].values: must be non-empty for operator In",
      "spec.podSelector.matchExpressions[1].values: must be non-empty for operator NotIn",
      "spec.podSelector.matchExpressions[2].values: must be empty for operator Exists",
      'spec.podSelector.matchExpressions[4].operator: "in" is not In, NotIn, Exists or DoesNotExist',
      'spec.podSelector.matchExpressions[5].key: "a/b/c" has more than one "/"',
      'spec.podSelector.matchExpressions[6].values[1]: "not ok" is not a label value: at most 63 characters [A-Za-z0-9_.-], alphanumeric at both ends',
    ],
  );
  // Selectors inside peers are checked the same way.
  assertEquals(
    problems(
      ingressFrom({ namespaceSelector: { matchExpressions: [{ key: "k", operator: "Exists", values: ["v"] }] } }),
    ),
    [
      "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be empty for operator Exists",
    ],
  );
  assertEquals(labelKeyProblem("kubernetes.io/metadata.name"), undefined);
  assertEquals(labelKeyProblem("example.com/" + "a".repeat(63)), undefined);
  assert(labelKeyProblem("a".repeat(64)) !== undefined);
  assert(labelKeyProblem("Example.com/a") !== undefined, "prefix is lower case");
  assert(labelKeyProblem("/a") !== undefined);
  assertEquals(labelValueProblem(""), undefined);
  assert(labelValueProblem("a".repeat(64)) !== undefined);
});

Deno.test("validate: policyTypes duplicates are problems; rules a policyType leaves out are warned about", () => {
  assertEquals(problems({ podSelector: {}, policyTypes: ["Ingress", "Egress", "Ingress"] }), [
    'spec.policyTypes[2]: duplicate "Ingress"',
  ]);
  assertEquals(warnings({ podSelector: {}, policyTypes: ["Egress"], ingress: [{}] }), [
    "spec.ingress: ignored: policyTypes does not include Ingress",
  ]);
  assertEquals(warnings({ podSelector: {}, policyTypes: ["Ingress"], egress: [{}] }), [
    "spec.egress: ignored: policyTypes does not include Egress",
  ]);
  assertEquals(warnings({ podSelector: {}, egress: [{}] }), [], "no policyTypes: egress rules imply Egress");
});

Deno.test("validate: policy-for — unparsable is a problem, absent or empty a warning", () => {
  const field = `metadata.annotations[${PolicyForAnnotation}]`;
  assertEquals(problems({ podSelector: {} }, "net1,,net2"), [
    `${field}: annotation ${PolicyForAnnotation}, entry 1: empty item (a stray comma?)`,
  ]);
  assertEquals(problems({ podSelector: {} }, "Bad_Name"), [
    `${field}: annotation ${PolicyForAnnotation}, entry 0, field name: "Bad_Name" is not a valid object name`,
  ]);
  for (const absent of [null, "", "  "]) {
    assertEquals(problems({ podSelector: {} }, absent), []);
    assertEquals(warnings({ podSelector: {} }, absent), [
      `${field}: absent or empty: the policy applies to no network`,
    ]);
  }
  assertEquals(policyNetworkRefs(policyWith({ podSelector: {} }, "a, other/b, ClusterNetwork/c")), [
    { name: "a" },
    { namespace: "other", name: "b" },
    { kind: "ClusterNetwork", name: "c" },
  ]);
  assertEquals(policyNetworkRefs(policyWith({ podSelector: {} }, "a,,b")), []);
});

Deno.test("validate: a policy without spec is refused (it would select no pod)", () => {
  const p = decode({ metadata: { name: "p", annotations: { [PolicyForAnnotation]: "n" } } });
  assertEquals(validatePolicy(p).problems.map(renderPolicyProblem), ["spec: Required value"]);
});
