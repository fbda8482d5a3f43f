// The backend tables (core/cni/backends): one spec and one module per kind, the compiler holding both tables
// exhaustive, and the choices every dispatch site reads from them.
import {
  backendForType,
  type BackendKind,
  backendOf,
  backendSpecs,
  specOf,
  type SpecTable,
} from "../../../core/cni/backends/kinds.ts";
import { backends, type BackendTable, moduleOf } from "../../../core/cni/backends/table.ts";
import { nadPlan } from "../../../core/cni/backends/nad/spec.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("backend tables: the compiler rejects a table without an entry for every kind", () => {
  const { Sriov: _module, ...modulesWithoutSriov } = backends;
  const { Sriov: _spec, ...specsWithoutSriov } = backendSpecs;
  // Without the directives `deno check` fails here: property 'Sriov' is missing in type … but required in the table.
  // @ts-expect-error a kind without a module does not compile
  const modules: BackendTable = modulesWithoutSriov;
  // @ts-expect-error a kind without a spec does not compile
  const specs: SpecTable = specsWithoutSriov;
  assertEquals([Object.keys(modules).length, Object.keys(specs).length], [4, 4]);
  const kinds: ReadonlyArray<BackendKind> = ["Ipvlan", "Macvlan", "Sriov", "Static", "Nad"];
  assertEquals(Object.keys(backends).sort(), [...kinds].sort());
  assertEquals(Object.keys(backendSpecs).sort(), [...kinds].sort());
  // A module is its spec and what it does.
  for (const k of kinds) {
    for (const [key, value] of Object.entries(backendSpecs[k])) {
      assertEquals(Object.entries(backends[k]).find(([name]) => name === key)?.[1], value, `${k}.${key}`);
    }
  }
});

Deno.test("backend table: a plan's module is its kind's entry", () => {
  for (const spec of [{}, { NetworkType: "macvlan" }, { NetworkType: "sriov" }, { NetworkType: "flannel" }]) {
    const plan = backendOf({ NetworkID: "n", ...spec });
    assertEquals(moduleOf(plan), backends[plan._tag]);
    assertEquals(specOf(plan), backendSpecs[plan._tag]);
  }
  assertEquals(moduleOf(nadPlan("{}")), backends.Nad);
});

Deno.test("backend table: NetworkTypes (any case) name their backend; unnamed types are static delegates", () => {
  const of = (t: string | undefined) => Object.entries(backendSpecs).find(([, m]) => m === backendForType(t))?.[0];
  assertEquals([undefined, "", "IPVLAN", "MacVlan", "sriov", "flannel", "calico"].map(of), [
    "Ipvlan",
    "Ipvlan",
    "Ipvlan",
    "Macvlan",
    "Sriov",
    "Static",
    "Static",
  ]);
  // What danm generates (and so reserves addresses for and names host interfaces after the NetworkID).
  assertEquals(
    Object.entries(backendSpecs).filter(([, m]) => m.generated).map(([k]) => k),
    ["Ipvlan", "Macvlan", "Sriov"],
  );
  // Only the built-in backends create the interface themselves; only SR-IOV takes a device from a pool.
  assertEquals(Object.entries(backendSpecs).filter(([, m]) => m.builtIn).map(([k]) => k), ["Ipvlan", "Macvlan"]);
  assertEquals(
    (Object.keys(backendSpecs) as BackendKind[]).filter((k) =>
      backendSpecs[k].deviceResource({ _tag: k, resource: "r" } as never) !== undefined
    ),
    ["Sriov"],
  );
});

Deno.test("backend tables: load whichever backend file a program imports first (no import cycle reaches them early)", async () => {
  // plan.ts imports kinds.ts, so a backend file importing plan.ts at run time would make a table read a module that
  // has not run yet (ReferenceError) whenever that backend is imported before the table.
  const root = new URL("../../../", import.meta.url);
  const folders = [...Deno.readDirSync(new URL("core/cni/backends/", root))].filter((e) => e.isDirectory);
  assertEquals(folders.length, Object.keys(backends).length);
  const files = folders.flatMap((e) => [`core/cni/backends/${e.name}/spec.ts`, `core/cni/backends/${e.name}/mod.ts`]);
  const url = (f: string) => JSON.stringify(new URL(f, root).href);
  await Promise.all(files.map(async (first) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--quiet",
        `--config=${new URL("deno.json", root).pathname}`,
        `await import(${url(first)});` +
        `const k = await import(${url("core/cni/backends/kinds.ts")});` +
        `const t = await import(${url("core/cni/backends/table.ts")});` +
        `console.log(Object.keys(k.backendSpecs).length + Object.keys(t.backends).length);`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(
      [out.success, new TextDecoder().decode(out.stdout).trim()],
      [true, String(2 * folders.length)],
      `${first} first: ${new TextDecoder().decode(out.stderr).slice(0, 400)}`,
    );
  }));
});
