// Smoke test of the host netns tier: two namespaces joined by a veth pair ping each other.
import { assert } from "../../harness/assert.ts";
import { netnsScope, ping } from "../../harness/netns.ts";

Deno.test("two network namespaces joined by veth ping each other", async () => {
  await using scope = netnsScope();
  const a = await scope.netns("smoke-a"), b = await scope.netns("smoke-b");
  await scope.veth({ name: "va", ns: a }, { name: "vb", ns: b });
  await scope.ip(a, "addr", "add", "192.0.2.1/24", "dev", "va");
  await scope.ip(b, "addr", "add", "192.0.2.2/24", "dev", "vb");
  assert(await ping(a, "192.0.2.2"), "a cannot reach b");
  assert(await ping(b, "192.0.2.1"), "b cannot reach a");
  assert(!(await ping(a, "192.0.2.3", 1)), "an absent address answered");
});
