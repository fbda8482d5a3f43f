// Label and field selectors with the apiserver's grammar, for the memory store.
//
//   labels:  a=b  a==b  a!=b  a in (x,y)  a notin (x)  a  !a  a>3  a<3   (comma = AND)
//   fields:  path=value  path==value  path!=value                        (comma = AND)
import { Predicate } from "effect";

export type LabelRequirement =
  | { readonly op: "=" | "!="; readonly key: string; readonly value: string }
  | { readonly op: "in" | "notin"; readonly key: string; readonly values: ReadonlyArray<string> }
  | { readonly op: "exists" | "!exists"; readonly key: string }
  | { readonly op: ">" | "<"; readonly key: string; readonly value: number };

export class SelectorParseError extends Error {
  override name = "SelectorParseError";
}

type Token =
  | { readonly t: "word"; readonly v: string }
  | { readonly t: "op"; readonly v: "=" | "==" | "!=" | "!" | "(" | ")" | "," | ">" | "<" };

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === " " || c === "\t") {
      i++;
    } else if (c === "!" && s[i + 1] === "=") {
      out.push({ t: "op", v: "!=" });
      i += 2;
    } else if (c === "=" && s[i + 1] === "=") {
      out.push({ t: "op", v: "==" });
      i += 2;
    } else if (c === "=" || c === "!" || c === "(" || c === ")" || c === "," || c === ">" || c === "<") {
      out.push({ t: "op", v: c });
      i++;
    } else {
      let j = i;
      while (j < s.length && !" \t=!(),<>".includes(s[j])) j++;
      out.push({ t: "word", v: s.slice(i, j) });
      i = j;
    }
  }
  return out;
}

export function parseLabelSelector(selector: string): ReadonlyArray<LabelRequirement> {
  const toks = tokenize(selector);
  const reqs: LabelRequirement[] = [];
  let i = 0;
  const fail = (why: string): never => {
    throw new SelectorParseError(`unable to parse requirement in label selector "${selector}": ${why}`);
  };
  const word = (): string => {
    const tk = toks[i++];
    return tk?.t === "word" ? tk.v : fail(`expected an identifier at token ${i}`);
  };
  const isOp = (v: string) => toks[i]?.t === "op" && toks[i].v === v;
  while (i < toks.length) {
    if (isOp("!")) {
      i++;
      reqs.push({ op: "!exists", key: word() });
    } else {
      const key = word();
      const tk = toks[i];
      if (tk === undefined || (tk.t === "op" && tk.v === ",")) {
        reqs.push({ op: "exists", key });
      } else if (tk.t === "op" && (tk.v === "=" || tk.v === "==" || tk.v === "!=")) {
        i++;
        // An empty value is allowed ("a=") and matches a label set to "".
        const next = toks[i];
        const value = next?.t === "word" ? (i++, next.v) : "";
        reqs.push({ op: tk.v === "!=" ? "!=" : "=", key, value });
      } else if (tk.t === "op" && (tk.v === ">" || tk.v === "<")) {
        i++;
        const v = Number(word());
        if (!Number.isInteger(v)) fail(`${key} ${tk.v} needs an integer`);
        reqs.push({ op: tk.v, key, value: v });
      } else if (tk.t === "word" && (tk.v === "in" || tk.v === "notin")) {
        i++;
        if (!isOp("(")) fail(`expected "(" after ${tk.v}`);
        i++;
        const values: string[] = [];
        while (!isOp(")")) {
          if (i >= toks.length) fail(`missing ")"`);
          if (isOp(",")) {
            i++;
            continue;
          }
          values.push(word());
        }
        i++;
        if (tk.v === "in" && values.length === 0) fail(`"in" needs at least one value`);
        reqs.push({ op: tk.v, key, values });
      } else {
        fail(`unexpected "${tk.v}" after ${key}`);
      }
    }
    if (i < toks.length) {
      if (!isOp(",")) fail(`expected "," at token ${i}`);
      i++;
      if (i >= toks.length) fail("trailing comma");
    }
  }
  return reqs;
}

export function matchesLabels(
  reqs: ReadonlyArray<LabelRequirement>,
  labels: Readonly<Record<string, string>>,
): boolean {
  return reqs.every((r) => {
    const has = Object.hasOwn(labels, r.key);
    const v = labels[r.key];
    switch (r.op) {
      case "=":
        return has && v === r.value;
      case "!=":
        return !has || v !== r.value;
      case "in":
        return has && r.values.includes(v);
      case "notin":
        return !has || !r.values.includes(v);
      case "exists":
        return has;
      case "!exists":
        return !has;
      case ">":
      case "<": {
        const n = Number(v);
        return has && Number.isInteger(n) && (r.op === ">" ? n > r.value : n < r.value);
      }
    }
  });
}

export interface FieldRequirement {
  readonly path: string;
  readonly op: "=" | "!=";
  readonly value: string;
}

export function parseFieldSelector(selector: string): ReadonlyArray<FieldRequirement> {
  const out: FieldRequirement[] = [];
  // Terms are split on unescaped commas; values may escape "\,", "\=" and "\\".
  const terms: string[] = [];
  let cur = "";
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (c === "\\" && i + 1 < selector.length) {
      cur += c + selector[++i];
    } else if (c === ",") {
      terms.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  terms.push(cur);
  for (const term of terms) {
    if (term.trim() === "") continue;
    const m = /^([^=!]+?)\s*(==|!=|=)\s*(.*)$/.exec(term.trim());
    if (!m) throw new SelectorParseError(`invalid field selector term "${term}"`);
    const value = m[3].replace(/\\(.)/g, "$1");
    out.push({ path: m[1].trim(), op: m[2] === "!=" ? "!=" : "=", value });
  }
  return out;
}

/** Reads a dotted path of an object as the apiserver's field label conversion does: absent = "". */
export function fieldValue(obj: unknown, path: string): string {
  return fieldReader(path)(obj);
}

/** fieldValue with the path split once, for a selector or an index applied to many objects. */
export function fieldReader(path: string): (obj: unknown) => string {
  const parts = path.split(".");
  return (obj) => {
    let cur: unknown = obj;
    for (const part of parts) {
      if (!Predicate.isObject(cur)) return "";
      cur = cur[part];
    }
    if (Predicate.isString(cur)) return cur;
    if (Predicate.isNumber(cur) || Predicate.isBoolean(cur)) return String(cur);
    return "";
  };
}

export function matchesFields(reqs: ReadonlyArray<FieldRequirement>, obj: unknown): boolean {
  return reqs.every((r) => (fieldValue(obj, r.path) === r.value) === (r.op === "="));
}

/**
 * Field labels the apiserver accepts per resource ("group/plural"); everything else is a 400. Every resource
 * supports metadata.name and metadata.namespace.
 */
export const supportedFieldLabels: Readonly<Record<string, ReadonlyArray<string>>> = {
  "/pods": [
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
  ],
  "/nodes": ["spec.unschedulable"],
  "/namespaces": ["status.phase"],
  "/events": [
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
  ],
  "/secrets": ["type"],
};
