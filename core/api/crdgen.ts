// Derives apiextensions.k8s.io/v1 CustomResourceDefinitions from the Effect Schemas that decode the objects,
// so that the apiserver's validation and danm's decoders cannot drift apart.
//
// The walk covers the subset of the Schema AST that has a structural-schema equivalent (structs, string-keyed
// records, arrays, strings, numbers, booleans, literal enums, `NullOr`). Built-in checks are translated from their
// `representation` metadata; any other check must carry an `openApi(...)` annotation saying what the CRD enforces
// for it (possibly nothing), so an untranslatable constraint is a generation error, never a silent omission.
import { Effect, Schema, SchemaAST } from "effect";

/** Annotation key holding an {@link OpenApiFragment} on a schema node or on a check. */
export const OpenApiAnnotation = "danm/openapi";

/** A piece of an OpenAPI v3 (Kubernetes structural) schema. */
export interface OpenApiFragment {
  readonly type?: "string" | "integer" | "number" | "boolean" | "object" | "array";
  readonly format?: string;
  readonly pattern?: string;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minProperties?: number;
  readonly maxProperties?: number;
  readonly enum?: ReadonlyArray<string | number | boolean>;
  readonly anyOf?: ReadonlyArray<OpenApiFragment>;
  readonly allOf?: ReadonlyArray<OpenApiFragment>;
  readonly "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  readonly "x-kubernetes-list-map-keys"?: ReadonlyArray<string>;
  readonly "x-kubernetes-preserve-unknown-fields"?: boolean;
  /** "atomic": server-side field management treats the whole map as one field (cheap writes of large maps). */
  readonly "x-kubernetes-map-type"?: "atomic" | "granular";
}

/** Annotation helper: `Schema.String.check(Schema.makeFilter(f, openApi({ format: "ipv4" })))`. */
export function openApi(fragment: OpenApiFragment): { readonly [OpenApiAnnotation]: OpenApiFragment } {
  return { [OpenApiAnnotation]: fragment };
}

/** The emitted schema: an OpenAPI fragment plus the structural parts the walk fills in. */
export interface JsonSchemaProps extends OpenApiFragment {
  readonly description?: string;
  readonly nullable?: boolean;
  readonly properties?: { readonly [name: string]: JsonSchemaProps };
  readonly required?: ReadonlyArray<string>;
  readonly additionalProperties?: JsonSchemaProps;
  readonly items?: JsonSchemaProps;
}

export class CrdGenerationError extends Schema.TaggedError<CrdGenerationError>()("CrdGenerationError", {
  kind: Schema.String,
  path: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `generating the CRD of ${this.kind}: at ${this.path || "<root>"}: ${this.reason}`;
  }
}

/** Thrown inside the synchronous walk; turned into a {@link CrdGenerationError} at the boundary. */
class Unsupported {
  constructor(readonly path: string, readonly reason: string) {}
}

type Mutable = { -readonly [K in keyof JsonSchemaProps]: JsonSchemaProps[K] };

function fragmentOf(annotations: unknown): OpenApiFragment | undefined {
  if (typeof annotations !== "object" || annotations === null) return undefined;
  const v = (annotations as Record<string, unknown>)[OpenApiAnnotation];
  return typeof v === "object" && v !== null ? v as OpenApiFragment : undefined;
}

function stringOf(annotations: unknown, key: string): string | undefined {
  if (typeof annotations !== "object" || annotations === null) return undefined;
  const v = (annotations as Record<string, unknown>)[key];
  return typeof v === "string" ? v : undefined;
}

/** Merges `extra` into `out`; two constraints of the same combinator are kept side by side under allOf. */
function merge(out: Mutable, extra: OpenApiFragment): void {
  for (const [k, v] of Object.entries(extra) as Array<[keyof OpenApiFragment, unknown]>) {
    if (k === "anyOf" && out.anyOf) {
      out.allOf = [...(out.allOf ?? []), { anyOf: out.anyOf }, { anyOf: v as ReadonlyArray<OpenApiFragment> }];
      delete out.anyOf;
    } else if (k === "allOf" && out.allOf) {
      out.allOf = [...out.allOf, ...(v as ReadonlyArray<OpenApiFragment>)];
    } else {
      (out as Record<string, unknown>)[k] = v;
    }
  }
}

function payload(check: SchemaAST.Filter<unknown>): { id: string; payload: Record<string, unknown> } | undefined {
  const rep = check.annotations?.["representation"];
  if (typeof rep !== "object" || rep === null) return undefined;
  const { id, payload } = rep as { id?: unknown; payload?: unknown };
  if (typeof id !== "string") return undefined;
  return { id, payload: typeof payload === "object" && payload !== null ? payload as Record<string, unknown> : {} };
}

/**
 * The OpenAPI equivalent of Effect's built-in checks (by their representation id), for a node of type `type`.
 * Never stricter than Effect: JS string length counts UTF-16 units, OpenAPI code points, so a minimum length of n
 * units only guarantees ceil(n/2) code points.
 */
function builtinCheck(id: string, p: Record<string, unknown>, type: string | undefined): OpenApiFragment | undefined {
  const n = (k: string) => p[k] as number;
  const isArray = type === "array";
  switch (id) {
    case "effect/schema/isInt":
      return { type: "integer" };
    case "effect/schema/isBetween":
      if (p["exclusiveMinimum"] || p["exclusiveMaximum"]) return undefined;
      return { minimum: n("minimum"), maximum: n("maximum") };
    case "effect/schema/isGreaterThanOrEqualTo":
      return { minimum: n("minimum") };
    case "effect/schema/isLessThanOrEqualTo":
      return { maximum: n("maximum") };
    case "effect/schema/isMinLength":
      return isArray ? { minItems: n("minLength") } : { minLength: Math.ceil(n("minLength") / 2) };
    case "effect/schema/isMaxLength":
      return isArray ? { maxItems: n("maxLength") } : { maxLength: n("maxLength") };
    case "effect/schema/isBetweenLength":
      return isArray
        ? { minItems: n("minimum"), maxItems: n("maximum") }
        : { minLength: Math.ceil(n("minimum") / 2), maxLength: n("maximum") };
    case "effect/schema/isPattern":
      return p["flags"] ? undefined : { pattern: p["source"] as string };
    case "effect/schema/isMinProperties":
      return { minProperties: n("minProperties") };
  }
  return undefined;
}

function checkFragment(check: SchemaAST.Check<unknown>, path: string, type: string | undefined): OpenApiFragment {
  const own = fragmentOf(check.annotations);
  if (own) return own;
  if (check._tag === "FilterGroup") {
    const out: Mutable = {};
    for (const c of check.checks) merge(out, checkFragment(c, path, type));
    return out;
  }
  const rep = payload(check);
  const translated = rep && builtinCheck(rep.id, rep.payload, type);
  if (translated) return translated;
  throw new Unsupported(
    path,
    `check "${stringOf(check.annotations, "expected") ?? rep?.id ?? "<filter>"}" has no OpenAPI equivalent; ` +
      `annotate it with openApi(...)`,
  );
}

function literalType(v: unknown): "string" | "integer" | "number" | "boolean" | undefined {
  if (typeof v === "string") return "string";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return undefined;
}

const join = (path: string, key: string) => path ? `${path}.${key}` : key;

function walk(ast: SchemaAST.AST, path: string): JsonSchemaProps {
  if (ast.encoding) throw new Unsupported(path, "schemas with a transformation have no structural equivalent");
  const out: Mutable = structural(ast, path);
  // `.annotate()` on a checked schema lands on its last check, so descriptions are looked for there too.
  let description = stringOf(ast.annotations, "description");
  for (const check of ast.checks ?? []) {
    merge(out, checkFragment(check, path, out.type));
    description = stringOf(check.annotations, "description") ?? description;
  }
  const own = fragmentOf(ast.annotations);
  if (own) merge(out, own);
  // Description and type first: the order Kubernetes' own generators use, easier to read in the YAML.
  const { description: _d, type, ...rest } = out;
  return { ...(description ? { description } : {}), ...(type ? { type } : {}), ...rest };
}

function structural(ast: SchemaAST.AST, path: string): Mutable {
  switch (ast._tag) {
    case "String":
      return { type: "string" };
    case "Number":
      return { type: "number" };
    case "Boolean":
      return { type: "boolean" };
    case "Unknown":
    case "Any":
      return { "x-kubernetes-preserve-unknown-fields": true };
    case "Literal": {
      const t = literalType(ast.literal);
      if (!t) throw new Unsupported(path, `literal ${String(ast.literal)} is not JSON`);
      return { type: t, enum: [ast.literal as string | number | boolean] };
    }
    case "Union": {
      const members = ast.types.filter((m) => m._tag !== "Null");
      const nullable = members.length < ast.types.length;
      let out: Mutable;
      if (members.length === 1) {
        out = walk(members[0], path);
      } else if (members.every((m) => m._tag === "Literal" && !m.checks && !m.annotations)) {
        const values = members.map((m) => (m as SchemaAST.Literal).literal as string | number | boolean);
        const types = new Set(values.map(literalType));
        if (types.size !== 1) throw new Unsupported(path, "a union of literals of different JSON types");
        out = { type: [...types][0], enum: values };
      } else {
        throw new Unsupported(path, "unions other than literal enums and NullOr have no structural equivalent");
      }
      if (nullable) out.nullable = true;
      return out;
    }
    case "Objects": {
      if (ast.propertySignatures.length > 0 && ast.indexSignatures.length > 0) {
        throw new Unsupported(path, "properties and an index signature together are not structural");
      }
      if (ast.indexSignatures.length > 0) {
        const [index, ...more] = ast.indexSignatures;
        if (more.length > 0 || index.parameter._tag !== "String") {
          throw new Unsupported(path, "only a single string-keyed index signature is supported");
        }
        return { type: "object", additionalProperties: walk(index.type, join(path, "*")) };
      }
      const properties: Record<string, JsonSchemaProps> = {};
      const required: string[] = [];
      // Code-unit order, not localeCompare: the output must not depend on the machine's locale.
      const sorted = [...ast.propertySignatures].sort((a, b) => String(a.name) < String(b.name) ? -1 : 1);
      for (const p of sorted) {
        if (typeof p.name !== "string") throw new Unsupported(path, "non-string property key");
        properties[p.name] = walk(p.type, join(path, p.name));
        if (!SchemaAST.isOptional(p.type)) required.push(p.name);
      }
      return required.length > 0 ? { type: "object", properties, required } : { type: "object", properties };
    }
    case "Arrays": {
      if (ast.elements.length > 0 || ast.rest.length !== 1) {
        throw new Unsupported(path, "tuples have no structural equivalent");
      }
      return { type: "array", items: walk(ast.rest[0], join(path, "[]")) };
    }
    case "Declaration": {
      const own = fragmentOf(ast.annotations);
      if (!own?.type) throw new Unsupported(path, "a declaration needs an openApi({ type, ... }) annotation");
      return {};
    }
    default:
      throw new Unsupported(path, `schema node ${ast._tag} has no structural equivalent`);
  }
}

/** The OpenAPI schema of one Schema (no Kubernetes object envelope). */
export function openApiSchema(kind: string, ast: SchemaAST.AST): Effect.Effect<JsonSchemaProps, CrdGenerationError> {
  return Effect.try({
    try: () => walk(ast, ""),
    catch: (e) =>
      e instanceof Unsupported
        ? new CrdGenerationError({ kind, path: e.path, reason: e.reason })
        : new CrdGenerationError({ kind, path: "", reason: String(e) }),
  });
}

export interface PrinterColumn {
  readonly name: string;
  readonly type: "string" | "integer" | "number" | "boolean" | "date";
  readonly jsonPath: string;
  readonly description?: string;
  /** 0 = shown by `kubectl get`; 1 = only with `-o wide`. */
  readonly priority?: number;
}

/** What a CRD needs beyond the Schema. */
export interface CrdDescription {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly namespaced: boolean;
  /** The object's Schema: a struct with `metadata` plus the kind's own top-level fields. */
  readonly schema: { readonly ast: SchemaAST.AST };
  readonly description?: string;
  readonly shortNames?: ReadonlyArray<string>;
  readonly categories?: ReadonlyArray<string>;
  readonly printerColumns?: ReadonlyArray<PrinterColumn>;
  readonly statusSubresource?: boolean;
}

export interface CustomResourceDefinition {
  readonly apiVersion: "apiextensions.k8s.io/v1";
  readonly kind: "CustomResourceDefinition";
  readonly metadata: { readonly name: string };
  readonly spec: {
    readonly group: string;
    readonly names: {
      readonly kind: string;
      readonly listKind: string;
      readonly plural: string;
      readonly singular: string;
      readonly shortNames?: ReadonlyArray<string>;
      readonly categories?: ReadonlyArray<string>;
    };
    readonly scope: "Namespaced" | "Cluster";
    readonly versions: ReadonlyArray<{
      readonly name: string;
      readonly served: boolean;
      readonly storage: boolean;
      readonly schema: { readonly openAPIV3Schema: JsonSchemaProps };
      readonly subresources?: { readonly status: Record<string, never> };
      readonly additionalPrinterColumns?: ReadonlyArray<PrinterColumn>;
    }>;
  };
}

// The standard texts of the type-meta fields, as Kubernetes' own generators write them.
const apiVersionDoc = "APIVersion defines the versioned schema of this representation of an object. Servers should " +
  "convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: " +
  "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const kindDoc = "Kind is a string value representing the REST resource this object represents. Servers may infer " +
  "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: " +
  "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/**
 * The CRD of one kind. `apiVersion`, `kind` and `metadata` get the standard envelope (the apiserver owns their
 * validation; a CRD may not constrain metadata beyond name); every other top-level field comes from the Schema.
 */
export function customResourceDefinition(
  d: CrdDescription,
): Effect.Effect<CustomResourceDefinition, CrdGenerationError> {
  return Effect.gen(function* () {
    const root = yield* openApiSchema(d.kind, d.schema.ast);
    if (root.type !== "object" || !root.properties) {
      return yield* new CrdGenerationError({ kind: d.kind, path: "", reason: "the object schema is not a struct" });
    }
    const { apiVersion: _a, kind: _k, metadata: _m, ...fields } = root.properties;
    const required = (root.required ?? []).filter((r) => !["apiVersion", "kind", "metadata"].includes(r));
    const openAPIV3Schema: JsonSchemaProps = {
      ...(d.description ? { description: d.description } : {}),
      type: "object",
      properties: {
        apiVersion: { description: apiVersionDoc, type: "string" },
        kind: { description: kindDoc, type: "string" },
        metadata: { type: "object" },
        ...fields,
      },
      ...(required.length > 0 ? { required } : {}),
    };
    return {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: `${d.plural}.${d.group}` },
      spec: {
        group: d.group,
        names: {
          kind: d.kind,
          listKind: `${d.kind}List`,
          plural: d.plural,
          singular: d.singular,
          ...(d.shortNames?.length ? { shortNames: d.shortNames } : {}),
          ...(d.categories?.length ? { categories: d.categories } : {}),
        },
        scope: d.namespaced ? "Namespaced" : "Cluster",
        versions: [{
          name: d.version,
          served: true,
          storage: true,
          schema: { openAPIV3Schema },
          ...(d.statusSubresource ? { subresources: { status: {} } } : {}),
          ...(d.printerColumns?.length ? { additionalPrinterColumns: d.printerColumns } : {}),
        }],
      },
    };
  });
}
