// Label and field selector grammar of the memory store.
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  SelectorParseError,
} from "../../../adapters/kube/selectors.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const labels = { app: "web", tier: "front", n: "5", empty: "" };
const sel = (s: string) => matchesLabels(parseLabelSelector(s), labels);

Deno.test("label selectors: every operator, combined with AND", () => {
  assertEquals(
    [
      sel("app=web"),
      sel("app==web"),
      sel("app!=db"),
      sel("app in (db, web)"),
      sel("app notin (db)"),
      sel("tier"),
      sel("!missing"),
      sel("n>3"),
      sel("n<9"),
      sel("empty="),
      sel("app=web,tier=front"),
      sel(""),
    ],
    Array(12).fill(true),
  );
  assertEquals(
    [
      sel("app=db"),
      sel("app!=web"),
      sel("app in (db)"),
      sel("app notin (web,x)"),
      sel("missing"),
      sel("!app"),
      sel("n>5"),
    ],
    Array(7).fill(false),
  );
  assertEquals(matchesLabels(parseLabelSelector("missing!=x"), labels), true, "!= matches absent keys");
  assertEquals(matchesLabels(parseLabelSelector("example.com/role=a"), { "example.com/role": "a" }), true);
});

Deno.test("label selectors: malformed input is rejected", () => {
  for (const bad of ["app in (", "app in ()", "=x", "app=web,", "a b", "n>x"]) {
    let threw = false;
    try {
      parseLabelSelector(bad);
    } catch (e) {
      threw = e instanceof SelectorParseError;
    }
    assert(threw, `"${bad}" should not parse`);
  }
});

Deno.test("field selectors: =, ==, != on dotted paths, escapes, absent fields read as empty", () => {
  const pod = { metadata: { name: "p,1", namespace: "ns" }, spec: { nodeName: "n1", hostNetwork: true } };
  const f = (s: string) => matchesFields(parseFieldSelector(s), pod);
  assertEquals(parseFieldSelector("spec.nodeName==n1,metadata.name!=x"), [
    { path: "spec.nodeName", op: "=", value: "n1" },
    { path: "metadata.name", op: "!=", value: "x" },
  ]);
  assertEquals([f("spec.nodeName=n1"), f("spec.hostNetwork=true"), f("metadata.name=p\\,1"), f("status.phase=")], [
    true,
    true,
    true,
    true,
  ]);
  assertEquals([f("spec.nodeName=n2"), f("spec.nodeName!=n1")], [false, false]);
});
