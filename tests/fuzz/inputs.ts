// Input generators for the decoder fuzzing (fast-check): JSON documents mutated from valid seeds, text mutations of
// their serialization, byte mutations of binary messages, and plain random input. Every generated case says which
// change it made, so a failure can be reproduced and a decoder's error checked for naming the changed field.
import fc from "fast-check";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type PathSegment = string | number;

/** One generated input and how it came about. */
export interface Case<I> {
  readonly input: I;
  /** What was done to the seed, for the report ("replace spec.Options.vlan with \"x\"", "random"). */
  readonly how: string;
  /** The one field changed in a valid seed, when exactly one was: its error must name it. */
  readonly changed?: ReadonlyArray<PathSegment>;
}

// ---- Hostile leaf values --------------------------------------------------------------------------------------------

const badCidrs = [
  "10.0.0.0/33",
  "10.0.0.256/24",
  "::/129",
  "1.2.3.4/",
  "/24",
  "10.0.0.1/24/1",
  " 10.0.0.0/8",
  "10.0.0.0/-1",
  "010.0.0.0/8",
  "10.1/16",
  "0x0a.0.0.0/8",
  "fe80::1%eth0/64",
  "2001:db8::/64\n",
  "::ffff:10.0.0.1/120",
  "1e3.0.0.0/8",
  "10.0.0.0/0008",
];
const oddStrings = [
  "",
  " ",
  "\u0000",
  "\ud800",
  "\u202e\u0041",
  "é",
  "👩‍👩‍👧",
  "a".repeat(70_000),
  "__proto__",
  "constructor",
  "toString",
  "-",
  "none",
  "dynamic",
  "10.0.0.5",
  "2001:db8::5",
  "ens4",
  "a/b/c",
  "x@y@z",
  "[",
  "{",
  '"',
  "null",
  "0",
  "1e309",
  "vx_toolongnameforlinux",
];
const oddNumbers = [
  0,
  -1,
  1,
  1.5,
  -0,
  4094,
  4095,
  16777215,
  16777216,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  1e21,
  1e308,
  -1e308,
  Number.MIN_VALUE,
];

const hostileString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...badCidrs, ...oddStrings) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  { weight: 1, arbitrary: fc.tuple(fc.ipV4(), fc.nat({ max: 40 })).map(([ip, len]) => `${ip}/${len}`) },
  { weight: 1, arbitrary: fc.ipV6() },
);
const hostileNumber = fc.oneof(
  fc.constantFrom(...oddNumbers),
  fc.integer(),
  fc.double({ noNaN: true }).filter(Number.isFinite),
);

/** Any JSON value, shallow or deep, with the hostile strings and numbers above among the leaves. */
export const hostileJson: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { weight: 3, arbitrary: hostileString },
    { weight: 2, arbitrary: hostileNumber },
    { weight: 1, arbitrary: fc.constantFrom<Json>(null, true, false) },
    { weight: 1, arbitrary: fc.array(tie("value"), { maxLength: 4 }) },
    {
      weight: 1,
      arbitrary: fc.dictionary(fc.oneof(hostileString, fc.string({ maxLength: 8 })), tie("value"), {
        maxKeys: 4,
        noNullPrototype: true,
      }),
    },
  ),
})).value;

/** A deeply nested value: decoders must not recurse without bound. */
const deep = fc.integer({ min: 50, max: 5000 }).map((n) => {
  let v: Json = "x";
  for (let i = 0; i < n; i++) v = i % 2 ? [v] : { a: v };
  return v;
});

// ---- JSON documents -------------------------------------------------------------------------------------------------

/** The paths of a document's nodes (not below depth 16: a deep value inserted earlier is changed as a whole). */
function pathsOf(doc: Json, at: PathSegment[] = [], out: PathSegment[][] = []): PathSegment[][] {
  out.push(at);
  if (at.length >= 16) return out;
  if (Array.isArray(doc)) doc.forEach((v, i) => pathsOf(v, [...at, i], out));
  else if (doc !== null && typeof doc === "object") {
    for (const [k, v] of Object.entries(doc)) pathsOf(v, [...at, k], out);
  }
  return out;
}

/** `doc` with the node at `path` changed by `f` (undefined = removed); the input is not modified. */
function updateAt(doc: Json, path: ReadonlyArray<PathSegment>, f: (v: Json) => Json | undefined): Json | undefined {
  if (path.length === 0) return f(doc);
  const [head, ...rest] = path;
  if (Array.isArray(doc)) {
    const copy = [...doc];
    const next = updateAt(copy[head as number], rest, f);
    if (next === undefined) copy.splice(head as number, 1);
    else copy[head as number] = next;
    return copy;
  }
  const obj = doc as Record<string, Json>;
  const copy: Record<string, Json> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k !== head) copy[k] = v;
    else {
      const next = updateAt(v, rest, f);
      if (next !== undefined) copy[k] = next;
    }
  }
  return copy;
}

export const describePath = (path: ReadonlyArray<PathSegment>): string =>
  path.length === 0
    ? "<root>"
    : path.map((s) => (typeof s === "number" ? `[${s}]` : `.${s}`)).join("").replace(/^\./, "");

type Mutation =
  | { readonly op: "delete" }
  | { readonly op: "replace"; readonly value: Json }
  | { readonly op: "addKey"; readonly key: string; readonly value: Json }
  | { readonly op: "wrap" }
  | { readonly op: "duplicateItem" };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Mutation>({ op: "delete" }) },
  { weight: 5, arbitrary: fc.oneof(hostileJson, deep).map((value): Mutation => ({ op: "replace", value })) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.oneof(hostileString, fc.constantFrom("Network", "IP", "extra", "__proto__")), hostileJson)
      .map(([key, value]): Mutation => ({ op: "addKey", key, value })),
  },
  { weight: 1, arbitrary: fc.constant<Mutation>({ op: "wrap" }) },
  { weight: 1, arbitrary: fc.constant<Mutation>({ op: "duplicateItem" }) },
);

function apply(doc: Json, path: ReadonlyArray<PathSegment>, m: Mutation): { doc: Json; how: string } {
  const where = describePath(path);
  const short = (v: Json) => {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  };
  switch (m.op) {
    case "delete":
      return { doc: updateAt(doc, path, () => undefined) ?? null, how: `delete ${where}` };
    case "replace":
      return { doc: updateAt(doc, path, () => m.value)!, how: `replace ${where} with ${short(m.value)}` };
    case "addKey":
      return {
        doc: updateAt(
          doc,
          path,
          (v) =>
            v !== null && typeof v === "object" && !Array.isArray(v)
              ? Object.defineProperty({ ...v }, m.key, {
                value: m.value,
                enumerable: true,
                writable: true,
                configurable: true,
              })
              : v,
        )!,
        how: `add key ${JSON.stringify(m.key)} = ${short(m.value)} at ${where}`,
      };
    case "wrap":
      return { doc: updateAt(doc, path, (v) => [v])!, how: `wrap ${where} in an array` };
    case "duplicateItem":
      return {
        doc: updateAt(doc, path, (v) => (Array.isArray(v) && v.length > 0 ? [...v, v[0]] : v))!,
        how: `duplicate the first item of ${where}`,
      };
  }
}

/** 1–3 mutations of one of `seeds`; a single mutation records the changed path. */
export function mutatedJson(seeds: ReadonlyArray<Json>): fc.Arbitrary<Case<Json>> {
  return fc.tuple(
    fc.nat({ max: seeds.length - 1 }),
    fc.array(fc.tuple(fc.nat(), mutation), { minLength: 1, maxLength: 3 }),
  ).map(([s, steps]) => {
    let doc = seeds[s];
    const hows: string[] = [];
    let changed: PathSegment[] | undefined;
    for (const [pick, m] of steps) {
      const paths = pathsOf(doc);
      const path = paths[pick % paths.length];
      const r = apply(doc, path, m);
      doc = r.doc;
      hows.push(r.how);
      changed = steps.length === 1 && m.op !== "wrap" && m.op !== "duplicateItem" ? path : undefined;
    }
    // As it would arrive over the wire: own "__proto__" keys, no -0, ordinary prototypes.
    const input = JSON.parse(JSON.stringify(doc) ?? "null") as Json;
    return { input, how: `seed ${s}: ${hows.join("; ")}`, ...(changed ? { changed } : {}) };
  });
}

/** Mutated seeds most of the time, unrelated random JSON otherwise. */
export function jsonCases(seeds: ReadonlyArray<Json>): fc.Arbitrary<Case<Json>> {
  return fc.oneof(
    { weight: 8, arbitrary: mutatedJson(seeds) },
    { weight: 1, arbitrary: seedsUnchanged(seeds) },
    {
      weight: 2,
      arbitrary: fc.oneof(hostileJson, deep).map((v) => ({ input: JSON.parse(JSON.stringify(v)), how: "random JSON" })),
    },
  );
}

const seedsUnchanged = (seeds: ReadonlyArray<Json>) =>
  fc.nat({ max: seeds.length - 1 }).map((s): Case<Json> => ({ input: seeds[s], how: `seed ${s} unchanged` }));

// ---- Text -----------------------------------------------------------------------------------------------------------

const textEdit = fc.oneof(
  fc.tuple(fc.constant("truncate" as const), fc.nat()),
  fc.tuple(fc.constant("insert" as const), fc.nat(), fc.string({ unit: "binary", minLength: 1, maxLength: 4 })),
  fc.tuple(fc.constant("delete" as const), fc.nat(), fc.integer({ min: 1, max: 8 })),
);

/** JSON cases serialized, sometimes with the text itself damaged (truncated, characters inserted or removed). */
export function textCases(seeds: ReadonlyArray<Json>): fc.Arbitrary<Case<string>> {
  const serialized = jsonCases(seeds).map((c): Case<string> => ({ ...c, input: JSON.stringify(c.input) }));
  const damaged = fc.tuple(mutatedJson(seeds), fc.array(textEdit, { minLength: 1, maxLength: 3 })).map(([c, edits]) => {
    let text = JSON.stringify(c.input);
    for (const e of edits) {
      const at = e[1] % (text.length + 1);
      if (e[0] === "truncate") text = text.slice(0, at);
      else if (e[0] === "insert") text = text.slice(0, at) + e[2] + text.slice(at);
      else text = text.slice(0, at) + text.slice(at + e[2]);
    }
    return { input: text, how: `${c.how}; text edits ${JSON.stringify(edits)}` };
  });
  return fc.oneof(
    { weight: 6, arbitrary: serialized },
    { weight: 3, arbitrary: damaged },
    {
      weight: 1,
      arbitrary: fc.string({ unit: "binary", maxLength: 200 }).map((input) => ({ input, how: "random text" })),
    },
  );
}

// ---- Bytes ----------------------------------------------------------------------------------------------------------

const byteEdit = fc.oneof(
  fc.tuple(fc.constant("set" as const), fc.nat(), fc.integer({ min: 0, max: 255 })),
  fc.tuple(fc.constant("truncate" as const), fc.nat(), fc.constant(0)),
  fc.tuple(fc.constant("insert" as const), fc.nat(), fc.integer({ min: 0, max: 255 })),
  fc.tuple(fc.constant("max" as const), fc.nat(), fc.constant(0xff)),
);

/** Valid messages with bytes changed, cut or inserted, and random byte strings. */
export function byteCases(seeds: ReadonlyArray<Uint8Array>): fc.Arbitrary<Case<Uint8Array>> {
  const edited = fc.tuple(fc.nat({ max: seeds.length - 1 }), fc.array(byteEdit, { minLength: 1, maxLength: 6 })).map(
    ([s, edits]) => {
      let b = Array.from(seeds[s]);
      for (const [op, pos, v] of edits) {
        const at = pos % (b.length + 1);
        if (op === "set" || op === "max") b[at % Math.max(b.length, 1)] = v;
        else if (op === "truncate") b = b.slice(0, at);
        else b.splice(at, 0, v);
      }
      return { input: Uint8Array.from(b), how: `seed ${s} with byte edits ${JSON.stringify(edits)}` };
    },
  );
  return fc.oneof(
    { weight: 6, arbitrary: edited },
    { weight: 1, arbitrary: fc.nat({ max: seeds.length - 1 }).map((s) => ({ input: seeds[s], how: `seed ${s}` })) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((input) => ({ input, how: "random bytes" })) },
  );
}
