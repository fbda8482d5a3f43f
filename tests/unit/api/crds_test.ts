// The generated CRDs: crds/ is current, the schemas are structural, and DANM's names and our ranges are in place.
import { Effect, Schema } from "effect";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import {
  CrdGenerationError,
  type CustomResourceDefinition,
  customResourceDefinition,
  type JsonSchemaProps,
  openApi,
  openApiSchema,
} from "../../../core/api/crdgen.ts";
import { danmCrdDescriptions, renderDanmCrds } from "../../../core/api/danm_crds.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { err, ok } from "./compat.ts";

const root = new URL("../../../", import.meta.url);

Deno.test("crds/ holds exactly what `deno task gen:crds` generates (regenerate after changing core/api/danm.ts)", () => {
  const files = ok(renderDanmCrds);
  assertEquals(files.length, 7);
  for (const f of files) {
    let committed: string;
    try {
      committed = Deno.readTextFileSync(new URL(f.path, root));
    } catch {
      fail(`${f.path} is missing; run deno task gen:crds`);
    }
    assert(committed === f.content, `${f.path} is stale; run deno task gen:crds`);
  }
  const generated = new Set(files.map((f) => f.path));
  for (const e of Deno.readDirSync(new URL("crds/", root))) {
    if (e.name.startsWith("danm.io_")) assert(generated.has(`crds/${e.name}`), `crds/${e.name} is not generated`);
  }
});

Deno.test("the generated YAML is already in `deno fmt` form (so `deno task fmt` never makes crds/ stale)", async () => {
  const paths = ok(renderDanmCrds).map((f) => f.path);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--check", ...paths],
    cwd: root,
    stderr: "piped",
  })
    .output();
  assert(out.success, new TextDecoder().decode(out.stderr));
});

const crds: CustomResourceDefinition[] = ok(Effect.forEach(danmCrdDescriptions, customResourceDefinition));
const byKind = (kind: string) => crds.find((c) => c.spec.names.kind === kind) ?? fail(`no CRD for ${kind}`);
const rootSchema = (kind: string) => byKind(kind).spec.versions[0].schema.openAPIV3Schema;

/** Follows a path of property names (`*` = additionalProperties, `[]` = items). */
function at(s: JsonSchemaProps, path: string): JsonSchemaProps {
  let cur = s;
  for (const k of path.split(".")) {
    const next = k === "[]" ? cur.items : k === "*" ? cur.additionalProperties : cur.properties?.[k];
    cur = next ?? fail(`no schema at ${path} (stopped at ${k})`);
  }
  return cur;
}

/** Kubernetes' structural-schema rules (apiextensions validation), checked on our output. */
function assertStructural(s: JsonSchemaProps, path: string, inJunctor = false): void {
  if (inJunctor) {
    for (const k of ["type", "description", "nullable", "properties", "items", "additionalProperties"] as const) {
      assert(s[k] === undefined, `${path}: ${k} inside anyOf/allOf`);
    }
  } else {
    assert(s.type !== undefined || s["x-kubernetes-preserve-unknown-fields"], `${path}: no type`);
  }
  assert(!(s.properties && s.additionalProperties), `${path}: properties and additionalProperties together`);
  if (s.type === "array") assert(s.items !== undefined, `${path}: array without items`);
  for (const [k, v] of Object.entries(s.properties ?? {})) assertStructural(v, `${path}.${k}`);
  if (s.additionalProperties) assertStructural(s.additionalProperties, `${path}.*`);
  if (s.items) assertStructural(s.items, `${path}[]`);
  for (const j of [...(s.anyOf ?? []), ...(s.allOf ?? [])]) assertStructural(j, `${path}(junctor)`, true);
}

Deno.test("the generated schemas are structural", () => {
  for (const c of crds) assertStructural(c.spec.versions[0].schema.openAPIV3Schema, c.spec.names.kind);
});

Deno.test("DANM's names, scopes, short names and categories", () => {
  assertEquals(
    crds.map((c) =>
      [c.metadata.name, c.spec.scope, (c.spec.names.shortNames ?? []).join("/"), (c.spec.names.categories ?? []).join()]
        .join(" ")
    ),
    [
      "danmnets.danm.io Namespaced dn/dnet all",
      "tenantnetworks.danm.io Namespaced tn/tnet all",
      "clusternetworks.danm.io Cluster cn/cnet all",
      "tenantconfigs.danm.io Cluster tc/tconf all",
      "danmeps.danm.io Namespaced de/dep ",
      "ipblocks.danm.io Cluster ipb ",
      "reservedips.danm.io Namespaced rip ",
    ],
  );
  for (const c of crds) {
    assertEquals(c.spec.group, "danm.io");
    assertEquals(c.spec.versions.map((v) => `${v.name} ${v.served} ${v.storage}`), ["v1 true true"]);
    assertEquals(c.spec.names.listKind, `${c.spec.names.kind}List`);
  }
});

Deno.test("networks: ranges, empty-string-or-format members, status subresource and printer columns", () => {
  for (const kind of ["DanmNet", "TenantNetwork", "ClusterNetwork"]) {
    const s = rootSchema(kind);
    const opt = (p: string) => at(s, `spec.Options.${p}`);
    assertEquals([opt("vlan").type, opt("vlan").minimum, opt("vlan").maximum], ["integer", 1, 4094]);
    assertEquals([opt("vxlan").minimum, opt("vxlan").maximum], [1, 16777215]);
    assertEquals([opt("rt_tables").minimum, opt("rt_tables").maximum], [0, 255]);
    assertEquals([opt("mtu").minimum, opt("mtu").maximum], [68, 65535]);
    assertEquals(opt("allocation_pool.start").anyOf, [{ maxLength: 0 }, { format: "ipv4" }]);
    assertEquals(opt("cidr").anyOf, [{ maxLength: 0 }, { format: "cidr", pattern: "^[0-9]+\\." }]);
    assertEquals(opt("routes.*").type, "string");
    assertEquals(at(s, "spec.AllowedTenants.[]").type, "string");
    assertEquals(at(s, "status.conditions")["x-kubernetes-list-map-keys"], ["type"]);
    assertEquals(s.required, ["spec"]);
    const v = byKind(kind).spec.versions[0];
    assertEquals(v.subresources, { status: {} });
    assertEquals(
      (v.additionalPrinterColumns ?? []).filter((c) => !c.priority).map((c) => `${c.name}=${c.jsonPath}`),
      [
        "NetworkType=.spec.NetworkType",
        "NetworkID=.spec.NetworkID",
        "CIDR=.spec.Options.cidr",
        "VLAN=.spec.Options.vlan",
        "VXLAN=.spec.Options.vxlan",
        "Age=.metadata.creationTimestamp",
      ],
    );
  }
});

Deno.test("TenantConfig has its fields at the top level; DanmEp has no status and DANM-written nulls", () => {
  const tc = rootSchema("TenantConfig");
  assertEquals(at(tc, "hostDevices.[]").required, ["name"]);
  assertEquals(at(tc, "networkIds.*").type, "string");
  assertEquals(tc.properties?.spec, undefined);
  assertEquals(byKind("TenantConfig").spec.versions[0].subresources, undefined);

  const ep = rootSchema("DanmEp");
  assertEquals(at(ep, "spec.Interface.proutes").nullable, true);
  assertEquals(at(ep, "spec.apiType").enum, ["DanmNet", "TenantNetwork", "ClusterNetwork", ""]);
  assertEquals(byKind("DanmEp").spec.versions[0].subresources, undefined);
  assertEquals(
    (byKind("DanmEp").spec.versions[0].additionalPrinterColumns ?? []).filter((c) => !c.priority).map((c) => c.name),
    ["Network", "Interface", "Address", "Pod", "Age"],
  );
});

Deno.test("the files are the CRDs, in YAML", () => {
  for (const f of ok(renderDanmCrds)) {
    const parsed = yaml.load(f.content) as CustomResourceDefinition;
    assertEquals(parsed, crds.find((c) => `crds/danm.io_${c.spec.names.plural}.yaml` === f.path));
  }
});

Deno.test("the generator refuses what a structural schema cannot say, naming the place", () => {
  const silent = Schema.String.check(Schema.makeFilter((s: string) => s.length % 2 === 0, { expected: "even" }));
  const e1 = err(openApiSchema("X", Schema.Struct({ spec: Schema.Struct({ a: silent }) }).ast));
  assert(e1 instanceof CrdGenerationError);
  assertEquals(e1.path, "spec.a");
  assertMatch(e1.message, /check "even" has no OpenAPI equivalent/);

  const e2 = err(openApiSchema("X", Schema.Struct({ u: Schema.Union([Schema.String, Schema.Number]) }).ast));
  assertEquals(e2.path, "u");

  const e3 = err(openApiSchema("X", Schema.Struct({ n: Schema.NumberFromString }).ast));
  assertMatch(e3.reason, /transformation/);

  // Lengths: items for arrays; for strings never stricter than Effect (UTF-16 units vs code points).
  assertEquals(
    ok(openApiSchema(
      "X",
      Schema.Struct({
        list: Schema.Array(Schema.String).check(Schema.isMinLength(1)),
        text: Schema.String.check(Schema.isMinLength(4), Schema.isMaxLength(10)),
        maybe: Schema.optionalKey(Schema.NullOr(Schema.Literals(["a", "b"]))),
      }).ast,
    )),
    {
      type: "object",
      properties: {
        list: { type: "array", items: { type: "string" }, minItems: 1 },
        maybe: { type: "string", enum: ["a", "b"], nullable: true },
        text: { type: "string", minLength: 2, maxLength: 10 },
      },
      required: ["list", "text"],
    },
  );

  // With an annotation saying what the CRD enforces, the same check is fine.
  const said = Schema.String.check(
    Schema.makeFilter((s: string) => s.length % 2 === 0, openApi({ pattern: "^(..)*$" })),
  );
  assertEquals(ok(openApiSchema("X", said.ast)), { type: "string", pattern: "^(..)*$" });
});
