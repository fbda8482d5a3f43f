// The Http port's contract, run against the live layer (Deno.serve on 127.0.0.1, ephemeral ports) and the memory
// twin (requests dispatched by address). Certificates come from tests/harness/pki.ts: two CAs with the same name,
// so that trusting the wrong one fails on the signature, not on a name lookup.
import { Context, Deferred, Effect, Exit, Fiber, type Layer, Scope } from "effect";
import { Http, type HttpService, type TlsPair } from "../../core/ports/http.ts";
import { assert, assertEquals, assertMatch, fail } from "../harness/assert.ts";
import { createPki } from "../harness/pki.ts";

export interface HttpContractEnv {
  readonly layer: Layer.Layer<Http>;
  /**
   * Sends one request on a new connection and reads the whole response; `caCerts` are the CAs trusted for https.
   * Rejects when no response arrives (nothing listens, wrong scheme, untrusted certificate).
   */
  readonly fetch: (url: string, init?: RequestInit, caCerts?: ReadonlyArray<string>) => Promise<Response>;
  readonly release: () => Promise<void>;
}

interface TestPki {
  readonly caA: string;
  readonly caB: string;
  readonly pairA: TlsPair;
  readonly pairB: TlsPair;
}

let pkiOnce: Promise<TestPki> | undefined;
/** Two CAs and a 127.0.0.1 serving pair from each, made once per test process. */
const testPki = () =>
  pkiOnce ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "danm-http-pki-" });
    try {
      const a = await createPki(`${dir}/a`), b = await createPki(`${dir}/b`);
      const sans = { dns: ["localhost"], ips: ["127.0.0.1"] };
      const leafA = await a.server("http-a", sans), leafB = await b.server("http-b", sans);
      return {
        caA: a.ca.certPem,
        caB: b.ca.certPem,
        pairA: { cert: leafA.certPem, key: leafA.keyPem },
        pairB: { cert: leafB.certPem, key: leafB.keyPem },
      };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();

class Greeting extends Context.Service<Greeting, { readonly text: string }>()("danm/tests/contract/http/Greeting") {}

const text = (body: string, status = 200) =>
  Effect.succeed(new Response(body, { status, headers: { "content-type": "text/plain" } }));

export function httpContract(suite: string, env: () => Promise<HttpContractEnv>): void {
  const test = (
    title: string,
    body: (
      http: HttpService,
      e: HttpContractEnv & { readonly get: (url: string, caCerts?: ReadonlyArray<string>) => Effect.Effect<Reply> },
      pki: TestPki,
    ) => Effect.Effect<void, unknown, Scope.Scope>,
  ) =>
    Deno.test(`${suite}: ${title}`, async () => {
      const e = await env();
      const pki = await testPki();
      const get = (url: string, caCerts?: ReadonlyArray<string>) => reply(e.fetch(url, {}, caCerts));
      try {
        await Effect.runPromise(
          Effect.scoped(Effect.gen(function* () {
            yield* body(yield* Http, { ...e, get }, pki);
          })).pipe(Effect.provide(e.layer)),
        );
      } finally {
        await e.release();
      }
    });

  const local = { hostname: "127.0.0.1", port: 0 };

  test(
    "the handler gets method, path, query, headers and body; status, headers and body come back",
    (http, e) =>
      Effect.gen(function* () {
        const server = yield* http.serve(local, (req) =>
          Effect.gen(function* () {
            const url = new URL(req.url);
            const body = yield* Effect.promise(() => req.text());
            return new Response(JSON.stringify([req.method, url.pathname, url.search, req.headers.get("x-in"), body]), {
              status: 201,
              headers: { "x-out": "yes" },
            });
          }));
        assert(server.address.port > 0, `a port was picked (${server.address.port})`);
        assertEquals(server.tls, false);
        const r = yield* Effect.promise(() =>
          e.fetch(`http://127.0.0.1:${server.address.port}/a/b?x=1`, {
            method: "POST",
            headers: { "x-in": "hello" },
            body: "payload",
          })
        );
        assertEquals([r.status, r.headers.get("x-out")], [201, "yes"]);
        assertEquals(JSON.parse(yield* Effect.promise(() => r.text())), ["POST", "/a/b", "?x=1", "hello", "payload"]);
      }),
  );

  test("the handler runs with the services of the caller of serve", (http, e) =>
    Effect.gen(function* () {
      const greet = Effect.gen(function* () {
        return yield* text((yield* Greeting).text);
      });
      const server = yield* http.serve(local, () => greet).pipe(
        Effect.provideService(Greeting, { text: "from the caller" }),
      );
      assertEquals(yield* e.get(`http://127.0.0.1:${server.address.port}/`), { status: 200, body: "from the caller" });
    }));

  test(
    "port 0 picks distinct free ports; a taken port fails with HttpListenError naming the address",
    (http, e) =>
      Effect.gen(function* () {
        const one = yield* http.serve(local, () => text("one"));
        const two = yield* http.serve(local, () => text("two"));
        assert(one.address.port !== two.address.port, "two ports");
        assertEquals((yield* e.get(`http://127.0.0.1:${one.address.port}/`)).body, "one");
        assertEquals((yield* e.get(`http://127.0.0.1:${two.address.port}/`)).body, "two");
        const taken = yield* Effect.flip(http.serve({ hostname: "127.0.0.1", port: one.address.port }, () => text("")));
        assertEquals(taken._tag, "HttpListenError");
        assertMatch(taken.message, new RegExp(`^listen on 127\\.0\\.0\\.1:${one.address.port}: `));
        assertEquals((yield* e.get(`http://127.0.0.1:${one.address.port}/`)).body, "one");
      }),
  );

  test("a failing or dying handler answers 500 and the server goes on serving", (http, e) =>
    Effect.gen(function* () {
      const server = yield* http.serve(local, (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/fail") return Effect.fail("no such thing");
        if (path === "/die") return Effect.die(new Error("boom"));
        return text("fine");
      });
      const base = `http://127.0.0.1:${server.address.port}`;
      assertEquals((yield* e.get(`${base}/fail`)).status, 500);
      const died = yield* e.get(`${base}/die`);
      assertEquals(died.status, 500);
      assertMatch(died.body, /boom/);
      assertEquals(yield* e.get(`${base}/ok`), { status: 200, body: "fine" });
    }));

  test(
    "close refuses new requests and waits for those in flight; the scope's end closes too",
    (http, e) =>
      Effect.gen(function* () {
        const entered = yield* Deferred.make<void>();
        const gate = yield* Deferred.make<void>();
        const server = yield* http.serve(local, () =>
          Effect.gen(function* () {
            yield* Deferred.succeed(entered, undefined);
            yield* Deferred.await(gate);
            return yield* text("slow");
          }));
        const url = `http://127.0.0.1:${server.address.port}/`;
        const slow = reply(e.fetch(url));
        const slowFiber = yield* Effect.forkChild(slow);
        yield* Deferred.await(entered);
        const closing = yield* Effect.forkChild(server.close);
        yield* Effect.sleep("100 millis");
        assertEquals(closing.pollUnsafe(), undefined, "close waits for the request in flight");
        yield* refused(e.fetch(url), "a request after close");
        yield* Deferred.succeed(gate, undefined);
        assertEquals(yield* Fiber.join(slowFiber), { status: 200, body: "slow" });
        yield* Fiber.join(closing);
        yield* server.close; // idempotent

        const scope = yield* Scope.make();
        const scoped = yield* http.serve(local, () => text("scoped")).pipe(Scope.provide(scope));
        const scopedUrl = `http://127.0.0.1:${scoped.address.port}/`;
        assertEquals((yield* e.get(scopedUrl)).body, "scoped");
        yield* Scope.close(scope, Exit.void);
        yield* refused(e.fetch(scopedUrl), "a request after the scope closed");
      }),
  );

  test("TLS: https with the given pair to clients trusting its CA; another CA or plain HTTP get no response", (
    http,
    e,
    pki,
  ) =>
    Effect.gen(function* () {
      const server = yield* http.serve({ ...local, tls: pki.pairA }, () => text("secure"));
      assertEquals(server.tls, true);
      const port = server.address.port;
      assertEquals(yield* e.get(`https://127.0.0.1:${port}/`, [pki.caA]), { status: 200, body: "secure" });
      yield* refused(e.fetch(`https://127.0.0.1:${port}/`, {}, [pki.caB]), "a client trusting another CA");
      yield* refused(e.fetch(`https://127.0.0.1:${port}/`), "a client trusting no CA");
      yield* refused(e.fetch(`http://127.0.0.1:${port}/`), "plain HTTP to a TLS server");
      const plain = yield* http.serve(local, () => text("plain"));
      yield* refused(e.fetch(`https://127.0.0.1:${plain.address.port}/`, {}, [pki.caA]), "https to a plain server");
    }));

  test("reload: new connections get the new pair on the same port while a request in flight finishes", (
    http,
    e,
    pki,
  ) =>
    Effect.gen(function* () {
      const entered = yield* Deferred.make<void>();
      const gate = yield* Deferred.make<void>();
      const server = yield* http.serve({ ...local, tls: pki.pairA }, (req) =>
        new URL(req.url).pathname === "/slow"
          ? Effect.gen(function* () {
            yield* Deferred.succeed(entered, undefined);
            yield* Deferred.await(gate);
            return yield* text("slow");
          })
          : text("quick"));
      const base = `https://127.0.0.1:${server.address.port}`;
      const slow = yield* Effect.forkChild(reply(e.fetch(`${base}/slow`, {}, [pki.caA])));
      yield* Deferred.await(entered);
      yield* server.reload(pki.pairB);
      assertEquals(yield* e.get(`${base}/`, [pki.caB]), { status: 200, body: "quick" });
      yield* refused(e.fetch(`${base}/`, {}, [pki.caA]), "a client trusting only the old CA");
      yield* Deferred.succeed(gate, undefined);
      assertEquals(yield* Fiber.join(slow), { status: 200, body: "slow" });
      yield* server.reload(pki.pairA);
      assertEquals((yield* e.get(`${base}/`, [pki.caA])).body, "quick");
    }));

  test("a pair that does not load fails serve and reload with HttpTlsError; the old pair keeps serving", (
    http,
    e,
    pki,
  ) =>
    Effect.gen(function* () {
      const broken = [
        { cert: pki.pairA.cert, key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" },
        { cert: "not a certificate", key: pki.pairA.key },
        { cert: pki.pairA.cert, key: pki.pairB.key }, // a key of another certificate
      ];
      for (const pair of broken) {
        const err = yield* Effect.flip(http.serve({ ...local, tls: pair }, () => text("")));
        assertEquals(err._tag, "HttpTlsError");
        assertMatch(err.message, /^load the serving certificate for 127\.0\.0\.1:0: /);
      }
      const server = yield* http.serve({ ...local, tls: pki.pairA }, () => text("still A"));
      const url = `https://127.0.0.1:${server.address.port}/`;
      for (const pair of broken) {
        const err = yield* Effect.flip(server.reload(pair));
        assertEquals(err._tag, "HttpTlsError");
        assertMatch(err.message, /^reload the serving certificate for 127\.0\.0\.1:\d+: /);
        assertEquals(yield* e.get(url, [pki.caA]), { status: 200, body: "still A" });
      }
    }));

  test(
    "reload fails with HttpTlsError on a plain-HTTP server and on a closed one",
    (http, e, pki) =>
      Effect.gen(function* () {
        const plain = yield* http.serve(local, () => text("plain"));
        const notTls = yield* Effect.flip(plain.reload(pki.pairA));
        assertMatch(notTls.message, /the server serves plain HTTP/);
        assertEquals((yield* e.get(`http://127.0.0.1:${plain.address.port}/`)).body, "plain");
        const secure = yield* http.serve({ ...local, tls: pki.pairA }, () => text(""));
        yield* secure.close;
        const closed = yield* Effect.flip(secure.reload(pki.pairB));
        assertMatch(closed.message, /the server is closed/);
      }),
  );
}

interface Reply {
  readonly status: number;
  readonly body: string;
}

const reply = (p: Promise<Response>): Effect.Effect<Reply> =>
  Effect.promise(async () => {
    const r = await p;
    return { status: r.status, body: await r.text() };
  });

/** Fails the test unless the request gets no response. */
const refused = (p: Promise<Response>, what: string) =>
  Effect.promise(() =>
    p.then(
      async (r) => fail(`${what} got a response: ${r.status} ${await r.text()}`),
      () => undefined,
    )
  );
