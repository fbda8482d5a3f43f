import { assertEquals, assertRejects } from "../../harness/assert.ts";
import { eventually, eventuallySucceeds } from "../../harness/eventually.ts";

Deno.test("eventually: undefined, false and throws are 'not yet'; the first value is the answer", async () => {
  const answers: Array<() => number | undefined | false> = [
    () => undefined,
    () => false,
    () => {
      throw new Error("not up");
    },
    () => 0,
  ];
  let i = 0;
  assertEquals(await eventually("the fourth probe", () => answers[i++](), { everyMs: 1 }), 0);
  assertEquals(i, 4);
});

Deno.test("eventually: the timeout names what was awaited and the last error; abort ends the wait at once", async () => {
  const e = <Error> await assertRejects(() =>
    eventually(
      "the moon",
      () => {
        throw new Error("still night");
      },
      30,
      5,
    )
  );
  assertEquals(e.message, "timed out after 30 ms waiting for the moon (last error: Error: still night)");
  let probes = 0;
  const aborted = <Error> await assertRejects(() =>
    eventually("a reply", () => void probes++, { abort: () => probes > 1 ? "the server exited" : undefined })
  );
  assertEquals([aborted.message, probes], ["while waiting for a reply: the server exited", 2]);
});

Deno.test("eventuallySucceeds: an assertion retried until it holds; at the deadline its own error", async () => {
  let n = 0;
  assertEquals(await eventuallySucceeds(() => n++ < 2 ? Promise.reject(new Error("no")) : Promise.resolve(n), 1000), 3);
  const e = <Error> await assertRejects(() => eventuallySucceeds(() => Promise.reject(new Error("never")), 20));
  assertEquals(e.message, "never");
});
