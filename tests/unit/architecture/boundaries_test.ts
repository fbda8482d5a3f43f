// The hexagonal split, checked on the sources so that a change breaking it fails here rather than in review:
// core/ is the domain and never reaches for adapters/, cmd/ or tests/; nothing shipped imports tests/ (a container
// image does not carry them); every port — a Context service that something outside core implements — is declared
// in core/ports, where the adapters and the in-memory twins find it.
import { assertEquals } from "../../harness/assert.ts";
import { importsOf, modulesUnder } from "../../harness/modules.ts";
import { repoRoot } from "../../harness/proc.ts";

/**
 * Imports of tests/ from shipped code that are known and owned by an open issue; the check fails when one is gone
 * too, so the entry is removed with the fix. None now: `sim --real` reaches the test harness by a computed path
 * (adapters/sim/real.ts), outside the module graph, and says so when tests/ is absent (tests/unit/sim/shipped_test.ts).
 */
const knownViolations: ReadonlyArray<string> = [];

const topOf = (rel: string) => rel.split("/")[0];

/** A Context service tag's name and the module declaring it. */
interface ServiceTag {
  readonly name: string;
  readonly module: string;
}

function serviceTags(module: string, text: string): ServiceTag[] {
  return [...text.matchAll(/(?:class\s+(\w+)\s+extends|const\s+(\w+)\s*=)\s*Context\.(?:Service|Tag|GenericTag)\b/g)]
    .map((m) => ({ name: m[1] ?? m[2], module }));
}

/** Whether `text` (a module importing `tag`'s module) supplies an implementation of it. */
function implementsTag(text: string, tag: ServiceTag): boolean {
  return new RegExp(`Layer\\.(?:succeed|effect|sync|scoped)\\(\\s*${tag.name}\\b|\\b${tag.name}\\.of\\(`).test(text);
}

/** Every breach of the boundaries in `sources` (module path from the repository root → its text), one line each. */
export function boundaryViolations(sources: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [module, text] of sources) {
    for (const { target } of importsOf(module, text)) {
      const to = topOf(target);
      if (topOf(module) === "core" && ["adapters", "cmd", "tests"].includes(to)) {
        out.push(`${module} imports ${target} (core/ imports ${to}/)`);
      } else if (topOf(module) !== "tests" && to === "tests") {
        out.push(`${module} imports ${target} (outside tests/, imports tests/)`);
      }
    }
  }
  const tags = [...sources].flatMap(([module, text]) => serviceTags(module, text));
  for (const tag of tags) {
    if (tag.module.startsWith("core/ports/") || topOf(tag.module) === "tests") continue;
    if (topOf(tag.module) !== "core") {
      out.push(`${tag.module} declares the service ${tag.name} (a port belongs in core/ports)`);
      continue;
    }
    // A service of core's own (Ipam, CniNode, …) is built in core; one supplied from outside is a port.
    for (const [module, text] of sources) {
      if (topOf(module) === "core" || topOf(module) === "tests") continue;
      if (importsOf(module, text).some((i) => i.target === tag.module) && implementsTag(text, tag)) {
        out.push(`${tag.module} declares the port ${tag.name}, implemented by ${module} (ports belong in core/ports)`);
      }
    }
  }
  return out.sort();
}

const repositorySources = (): Map<string, string> =>
  new Map(
    modulesUnder(["core", "adapters", "cmd", "k8s", "tests"], ["tests/tools", "tests/fixtures"])
      .map((m) => [m, Deno.readTextFileSync(`${repoRoot}/${m}`)]),
  );

Deno.test("module graph: core imports no adapter, command or test; only tests import tests; ports live in core/ports", () => {
  const sources = repositorySources();
  for (const layer of ["core", "adapters", "cmd", "tests"]) {
    assertEquals([...sources.keys()].some((m) => m.startsWith(`${layer}/`)), true, `no ${layer}/ module was read`);
  }
  assertEquals(boundaryViolations(sources), [...knownViolations].sort());
});

Deno.test("module graph: each kind of breach is named", () => {
  const planted = new Map<string, string>([
    ["core/ports/kube.ts", `export class Kube extends Context.Service<Kube, {}>()("k") {}`],
    [
      "core/cni/add.ts",
      `import { layer } from "../../adapters/netlink/live.ts";\nimport { x } from "../../cmd/danm.ts";`,
    ],
    ["core/ipam/plan.ts", `const h = await import("../../tests/harness/proc.ts");`],
    ["core/cni/devices.ts", `export class PodDevices extends Context.Service<PodDevices, {}>()("d") {}`],
    ["core/cni/node.ts", `export class CniNode extends Context.Service<CniNode, {}>()("n") {}`],
    [
      "adapters/kubelet/live.ts",
      `import { PodDevices } from "../../core/cni/devices.ts";\nLayer.effect(PodDevices, x);`,
    ],
    [
      "adapters/sim/world.ts",
      `import { CniNode } from "../../core/cni/node.ts";\nconst Clock = Context.GenericTag("c");`,
    ],
    ["k8s/images/build.ts", `import { run } from "../../tests/harness/proc.ts";`],
    [
      "tests/unit/x_test.ts",
      `import "../../adapters/netlink/live.ts";\nclass T extends Context.Service<T, {}>()("t") {}`,
    ],
    ["cmd/danm.ts", `import { CniNode } from "../core/cni/node.ts";\nLayer.effect(CniNode, make());`],
  ]);
  assertEquals(boundaryViolations(planted), [
    "adapters/sim/world.ts declares the service Clock (a port belongs in core/ports)",
    "core/cni/add.ts imports adapters/netlink/live.ts (core/ imports adapters/)",
    "core/cni/add.ts imports cmd/danm.ts (core/ imports cmd/)",
    "core/cni/devices.ts declares the port PodDevices, implemented by adapters/kubelet/live.ts (ports belong in core/ports)",
    "core/cni/node.ts declares the port CniNode, implemented by cmd/danm.ts (ports belong in core/ports)",
    "core/ipam/plan.ts imports tests/harness/proc.ts (core/ imports tests/)",
    "k8s/images/build.ts imports tests/harness/proc.ts (outside tests/, imports tests/)",
  ]);
});
