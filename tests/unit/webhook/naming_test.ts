// DANM's interface naming (core/podnetworks/naming.ts): eth0 first, prefix + index, legacy, the 15-byte limit.
import {
  interfaceName,
  interfaceNameProblem,
  planInterfaceNames,
  prefixProblem,
} from "../../../core/podnetworks/naming.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";

Deno.test("naming: the first interface is eth0 whatever its prefix; then prefix + index, eth by default", () => {
  assertEquals(interfaceName(0, { prefix: "ext" }), "eth0");
  assertEquals(interfaceName(1, { prefix: "ext" }), "ext1");
  assertEquals(interfaceName(2, { prefix: "int" }), "int2");
  assertEquals(interfaceName(3, {}), "eth3");
  assertEquals(interfaceName(3, { prefix: "" }), "eth3");
});

Deno.test("naming: legacy uses exactly the prefix, and eth + index without one", () => {
  assertEquals(interfaceName(1, { prefix: "ext" }, "legacy"), "ext");
  assertEquals(interfaceName(4, {}, "legacy"), "eth4");
  assertEquals(interfaceName(0, { prefix: "ext" }, "legacy"), "eth0");
});

Deno.test("naming: a requested name wins except at index 0", () => {
  assertEquals(interfaceName(2, { prefix: "int", requested: "data" }), "data");
  assertEquals(interfaceName(0, { requested: "data" }), "eth0");
});

Deno.test("naming: 15 bytes, counted in UTF-8, and the kernel's forbidden characters", () => {
  assertEquals(interfaceNameProblem("abcdefghijklmno"), undefined);
  assertMatch(interfaceNameProblem("abcdefghijklmnop") ?? "", /is 16 bytes long/);
  assertMatch(interfaceNameProblem("üüüüüüüü") ?? "", /is 16 bytes long/);
  assertMatch(interfaceNameProblem("a/b") ?? "", /contains '\/'/);
  assertMatch(interfaceNameProblem("a b") ?? "", /whitespace/);
  assertMatch(interfaceNameProblem("..") ?? "", /not a valid interface name/);
  assertEquals(prefixProblem("abcdefghijklmn"), undefined);
  assertMatch(prefixProblem("abcdefghijklmno") ?? "", /cannot fit/);
});

Deno.test("naming: a pod's plan reports the first interface, long and duplicate names", () => {
  const ok = planInterfaceNames([{ prefix: "ext" }, { prefix: "ext" }, {}]);
  assertEquals(ok, { names: ["eth0", "ext1", "eth2"], problems: [] });
  const legacy = planInterfaceNames([{}, { prefix: "ext" }, { prefix: "ext" }], "legacy");
  assertEquals(legacy.problems, [{ index: 2, name: "ext", reason: '"ext" is already the name of interface 1' }]);
  const first = planInterfaceNames([{ requested: "net1" }]);
  assertEquals(first.problems.map((p) => p.index), [0]);
  const long = planInterfaceNames(Array.from({ length: 11 }, () => ({ prefix: "abcdefghijklmn" })));
  assertEquals(long.problems.map((p) => [p.index, p.name]), [[10, "abcdefghijklmn10"]]);
});
