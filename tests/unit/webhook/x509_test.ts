// The certificate bootstrap's X.509 (WebCrypto + DER): checked by openssl and by a real TLS handshake.
import { Effect } from "effect";
import { createCa, issueServingCertificate } from "../../../core/webhook/x509.ts";
import { assert, assertMatch, assertRejects } from "../../harness/assert.ts";
import { run } from "../../harness/proc.ts";

const issue = async () => {
  const ca = await Effect.runPromise(createCa("danm-test-ca", 30));
  const leaf = await Effect.runPromise(issueServingCertificate(ca, {
    commonName: "danm-webhook.kube-system.svc",
    dnsNames: ["danm-webhook.kube-system.svc", "localhost"],
    ipAddresses: ["127.0.0.1", "::1"],
    validityDays: 10,
  }));
  return { ca, leaf };
};

Deno.test("x509: openssl verifies the chain and reads CA flags, SANs and usages", async () => {
  const { ca, leaf } = await issue();
  const dir = await Deno.makeTempDir({ prefix: "danm-x509-" });
  try {
    await Deno.writeTextFile(`${dir}/ca.pem`, ca.certPem);
    await Deno.writeTextFile(`${dir}/leaf.pem`, leaf.certPem);
    await Deno.writeTextFile(`${dir}/leaf.key`, leaf.keyPem);
    assertMatch(await run(["openssl", "verify", "-CAfile", `${dir}/ca.pem`, `${dir}/leaf.pem`]), /leaf\.pem: OK/);
    const caText = await run(["openssl", "x509", "-in", `${dir}/ca.pem`, "-noout", "-text"]);
    assertMatch(caText, /CA:TRUE/);
    assertMatch(caText, /Certificate Sign/);
    const text = await run(["openssl", "x509", "-in", `${dir}/leaf.pem`, "-noout", "-text"]);
    assertMatch(
      text,
      /DNS:danm-webhook\.kube-system\.svc, DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/,
    );
    assertMatch(text, /TLS Web Server Authentication/);
    assertMatch(text, /CA:FALSE/);
    assertMatch(text, /Issuer: CN ?= ?danm-test-ca/);
    // The key is the certificate's.
    const fromKey = await run(["openssl", "pkey", "-in", `${dir}/leaf.key`, "-pubout"]);
    const fromCert = await run(["openssl", "x509", "-in", `${dir}/leaf.pem`, "-noout", "-pubkey"]);
    assert(fromKey === fromCert, "private key matches the certificate");
    // Valid from (slightly before) now for the requested 10 days.
    const end = /notAfter=(.*)/.exec(await run(["openssl", "x509", "-in", `${dir}/leaf.pem`, "-noout", "-enddate"]))
      ?.[1];
    const left = (Date.parse(end ?? "") - Date.now()) / 86_400_000;
    assert(left > 9.9 && left <= 10, `expires in 10 days, got ${left}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("x509: a TLS client trusting the CA talks to a server with the issued pair; another CA is refused", async () => {
  const { ca, leaf } = await issue();
  const other = await Effect.runPromise(createCa("someone-else", 30));
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: leaf.certPem, key: leaf.keyPem, onListen: () => {} },
    () => new Response("hello"),
  );
  const trusting = Deno.createHttpClient({ caCerts: [ca.certPem] });
  const distrusting = Deno.createHttpClient({ caCerts: [other.certPem] });
  try {
    for (const host of ["localhost", "127.0.0.1"]) {
      const r = await fetch(`https://${host}:${server.addr.port}/`, { client: trusting });
      assertMatch(await r.text(), /hello/);
    }
    await assertRejects(() => fetch(`https://localhost:${server.addr.port}/`, { client: distrusting }));
  } finally {
    trusting.close();
    distrusting.close();
    await server.shutdown();
  }
});
