// Function and closure lengths in the project's sources, read with the TypeScript compiler's own parser (a regex
// cannot tell where a closure ends). Backs the architecture check that no unit grows past a screenful or two
// without a stated reason.
import ts from "typescript";

/** A function, method or closure longer than the limit. */
export interface LongFunction {
  readonly module: string;
  /** 1-based line of the function's first line. */
  readonly line: number;
  /** Its own name, or the name of what it is assigned/passed to (see `nameOf`). */
  readonly name: string;
  readonly lines: number;
}

/** The marker a comment on the line before a long function carries to state why it is kept whole. */
export const longMarker = /\/\/\s*long:\s*\S/;

const isFunctionLike = (n: ts.Node): n is ts.FunctionLikeDeclaration =>
  ts.isFunctionDeclaration(n) || ts.isFunctionExpression(n) || ts.isArrowFunction(n) || ts.isMethodDeclaration(n) ||
  ts.isConstructorDeclaration(n) || ts.isGetAccessorDeclaration(n) || ts.isSetAccessorDeclaration(n);

/**
 * A readable name for a function: its declared name, else the variable, property or parameter it is bound to, else
 * the call it is an argument of (`Effect.gen` inside `const makeIpam = …` is named makeIpam), found walking up.
 */
function nameOf(node: ts.Node, file: ts.SourceFile): string {
  for (let n: ts.Node | undefined = node; n; n = n.parent) {
    if ((isFunctionLike(n) || ts.isClassDeclaration(n)) && n.name) return n.name.getText(file);
    if (ts.isVariableDeclaration(n) || ts.isPropertyAssignment(n) || ts.isPropertyDeclaration(n)) {
      return n.name.getText(file);
    }
    if (ts.isSourceFile(n)) break;
  }
  return "<anonymous>";
}

/** The statement, class member or object property `node` is part of (where a comment about it sits). */
function statementOf(node: ts.Node): ts.Node {
  let n = node;
  while (
    n.parent && !ts.isBlock(n.parent) && !ts.isSourceFile(n.parent) && !ts.isModuleBlock(n.parent) &&
    !ts.isClassLike(n.parent) && !ts.isObjectLiteralExpression(n.parent) && !ts.isCaseOrDefaultClause(n.parent)
  ) n = n.parent;
  return n;
}

/**
 * Every function-like node in `text` (a module's source) spanning more than `limit` lines, unless a
 * `// long: <reason>` comment sits on the line before its first line or before the statement holding it.
 */
export function longFunctions(module: string, text: string, limit: number): LongFunction[] {
  const file = ts.createSourceFile(module, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const sourceLines = text.split("\n");
  const out: LongFunction[] = [];
  const visit = (node: ts.Node) => {
    if (isFunctionLike(node) && node.body) {
      const first = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
      const last = file.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = last - first + 1;
      const held = file.getLineAndCharacterOfPosition(statementOf(node).getStart(file)).line;
      const reasoned = [first, held].some((l) => longMarker.test(sourceLines[l - 1] ?? ""));
      if (lines > limit && !reasoned) {
        out.push({ module, line: first + 1, name: nameOf(node, file), lines });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return out;
}
