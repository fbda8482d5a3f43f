// VNI range lists (core/webhook/vni.ts).
import {
  firstOverlap,
  formatRange,
  parseVniRange,
  rangeContains,
  rangeSize,
  rangeValues,
} from "../../../core/webhook/vni.ts";
import { assertEquals, fail } from "../../harness/assert.ts";

const range = (s: string) => {
  const r = parseVniRange(s);
  return "range" in r ? r.range : fail(r.error);
};

Deno.test("vni: cpuset lists parse into sorted, merged intervals", () => {
  assertEquals(range("2000-2500,2601,2650-2700"), [{ start: 2000, end: 2500 }, { start: 2601, end: 2601 }, {
    start: 2650,
    end: 2700,
  }]);
  assertEquals(formatRange(range("5, 3-4,1,10-12,11")), "1,3-5,10-12");
  assertEquals(range(""), []);
  assertEquals(rangeSize(range("1-16777215")), 16777215);
});

Deno.test("vni: malformed items are named", () => {
  for (
    const [text, error] of [["1-", '"1-" is not'], ["a", '"a" is not'], ["5-3", "must not be below"], [
      "1,,2",
      '"" is not',
    ]]
  ) {
    const r = parseVniRange(text);
    if (!("error" in r) || !r.error.includes(error)) fail(`${text}: ${JSON.stringify(r)}`);
  }
});

Deno.test("vni: membership, overlap and lazy ascending values", () => {
  const r = range("10-12,20");
  assertEquals([rangeContains(r, 12), rangeContains(r, 13), rangeContains(r, 20)], [true, false, true]);
  assertEquals(firstOverlap(range("1-5,100-200"), range("6-99,150")), 150);
  assertEquals(firstOverlap(range("1-5"), range("6-9")), undefined);
  const it = rangeValues(range("1-16777215"));
  assertEquals([it.next().value, it.next().value], [1, 2]);
  assertEquals([...rangeValues(r)], [10, 11, 12, 20]);
});
