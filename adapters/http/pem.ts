// Just enough X.509 for the in-memory HTTP twin to behave like a TLS stack where tests can see it: a pair whose
// certificate or key does not parse, or whose key does not match the certificate, is refused (as rustls does), and
// a client trusts a server when the leaf's issuer is one of its CAs by name and signature (one level, no validity
// period, no host name check). WebCrypto only: RSA (PKCS#1 v1.5) and ECDSA P-256/P-384 with SHA-256/384, keys in
// PKCS#8 (what openssl 3 and core/webhook/x509.ts write; the live layer also takes PKCS#1 and SEC1 keys).

interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly body: number;
  readonly end: number;
}

function readTlv(buf: Uint8Array, at: number): Tlv {
  if (at + 2 > buf.length) throw new Error("truncated DER");
  const tag = buf[at];
  let len = buf[at + 1];
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || p + n > buf.length) throw new Error("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
  }
  if (p + len > buf.length) throw new Error("truncated DER");
  return { tag, start: at, body: p, end: p + len };
}

function children(buf: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = t.body; at < t.end;) {
    const c = readTlv(buf, at);
    out.push(c);
    at = c.end;
  }
  return out;
}

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t === undefined || t.tag !== tag) throw new Error(`${what}: unexpected DER structure`);
  return t;
}

const raw = (buf: Uint8Array, t: Tlv) => buf.slice(t.start, t.end);
const content = (buf: Uint8Array, t: Tlv) => buf.slice(t.body, t.end);
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

/** The DER of every PEM block with `label`. */
export function pemBlocks(text: string, label: RegExp): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const m of text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g)) {
    if (!label.test(m[1])) continue;
    const b64 = m[2].replace(/\s+/g, "");
    let bin: string;
    try {
      bin = atob(b64);
    } catch {
      throw new Error(`${m[1]}: invalid base64`);
    }
    out.push(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  }
  return out;
}

// OIDs as hex of their DER content.
const oids = {
  rsaEncryption: "2a864886f70d010101",
  ecPublicKey: "2a8648ce3d0201",
  p256: "2a8648ce3d030107",
  p384: "2b81040022",
  sha256WithRsa: "2a864886f70d01010b",
  sha384WithRsa: "2a864886f70d01010c",
  ecdsaSha256: "2a8648ce3d040302",
  ecdsaSha384: "2a8648ce3d040303",
};

type KeyAlgorithm = RsaHashedImportParams | EcKeyImportParams;

/** The WebCrypto algorithm of an AlgorithmIdentifier (SEQUENCE { OID, params }) of a key. */
function keyAlgorithm(buf: Uint8Array, alg: Tlv, hash: string): KeyAlgorithm {
  const [id, params] = children(buf, expect(alg, 0x30, "algorithm"));
  const oid = hex(content(buf, expect(id, 0x06, "algorithm")));
  if (oid === oids.rsaEncryption) return { name: "RSASSA-PKCS1-v1_5", hash };
  if (oid === oids.ecPublicKey) {
    const curve = hex(content(buf, expect(params, 0x06, "curve")));
    if (curve === oids.p256) return { name: "ECDSA", namedCurve: "P-256" };
    if (curve === oids.p384) return { name: "ECDSA", namedCurve: "P-384" };
    throw new Error("unsupported elliptic curve");
  }
  throw new Error("unsupported key algorithm");
}

export interface Certificate {
  readonly issuer: string;
  readonly subject: string;
  readonly tbs: Uint8Array<ArrayBuffer>;
  readonly spki: Uint8Array<ArrayBuffer>;
  /** Signature algorithm: its hash, and whether ECDSA (whose DER signature WebCrypto wants as r‖s). */
  readonly hash: string;
  readonly ecdsa: boolean;
  readonly signature: Uint8Array<ArrayBuffer>;
}

export function parseCertificate(der: Uint8Array): Certificate {
  const top = expect(readTlv(der, 0), 0x30, "certificate");
  if (top.end !== der.length) throw new Error("certificate: trailing bytes");
  const [tbsT, sigAlg, sigValue] = children(der, top);
  const tbs = children(der, expect(tbsT, 0x30, "tbsCertificate"));
  const f = tbs[0]?.tag === 0xa0 ? tbs.slice(1) : tbs; // [0] version is optional
  const [, , issuer, , subject, spki] = f;
  const algOid = hex(content(der, expect(children(der, expect(sigAlg, 0x30, "signatureAlgorithm"))[0], 0x06, "oid")));
  const sig = content(der, expect(sigValue, 0x03, "signature")).slice(1); // drop the unused-bits byte
  const alg = ({
    [oids.sha256WithRsa]: { hash: "SHA-256", ecdsa: false },
    [oids.sha384WithRsa]: { hash: "SHA-384", ecdsa: false },
    [oids.ecdsaSha256]: { hash: "SHA-256", ecdsa: true },
    [oids.ecdsaSha384]: { hash: "SHA-384", ecdsa: true },
  } as Record<string, { hash: string; ecdsa: boolean }>)[algOid];
  if (alg === undefined) throw new Error("unsupported signature algorithm");
  return {
    issuer: hex(raw(der, expect(issuer, 0x30, "issuer"))),
    subject: hex(raw(der, expect(subject, 0x30, "subject"))),
    tbs: raw(der, tbsT),
    spki: raw(der, expect(spki, 0x30, "subjectPublicKeyInfo")),
    ...alg,
    signature: sig,
  };
}

const importSpki = (spki: Uint8Array<ArrayBuffer>, hash: string) => {
  const top = readTlv(spki, 0);
  const alg = keyAlgorithm(spki, children(spki, top)[0], hash);
  return crypto.subtle.importKey("spki", spki, alg, false, ["verify"]).then((k) => ({ key: k, alg }));
};

const verifyParams = (alg: KeyAlgorithm, hash: string): AlgorithmIdentifier | EcdsaParams =>
  alg.name === "ECDSA" ? { name: "ECDSA", hash } : alg.name;

/** ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }) to r‖s of the curve's size. */
function ecdsaRaw(der: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const [r, s] = children(der, expect(readTlv(der, 0), 0x30, "ECDSA signature"));
  const out = new Uint8Array(2 * size);
  for (const [i, t] of [r, s].entries()) {
    let v = content(der, expect(t, 0x02, "ECDSA signature"));
    while (v.length > size && v[0] === 0) v = v.slice(1);
    out.set(v, (i + 1) * size - v.length);
  }
  return out;
}

/** Whether `leaf` was signed by `ca` (same name, valid signature). */
export async function issuedBy(leaf: Certificate, ca: Certificate): Promise<boolean> {
  if (leaf.issuer !== ca.subject) return false;
  try {
    const { key, alg } = await importSpki(ca.spki, leaf.hash);
    const sig = leaf.ecdsa
      ? ecdsaRaw(leaf.signature, (alg as EcKeyImportParams).namedCurve === "P-384" ? 48 : 32)
      : leaf.signature;
    return await crypto.subtle.verify(verifyParams(alg, leaf.hash), key, sig, leaf.tbs);
  } catch {
    return false;
  }
}

/** The leaf of a pair that loads: throws unless the certificate parses and the key signs for it. */
export async function checkPair(certPem: string, keyPem: string): Promise<Certificate> {
  const certs = pemBlocks(certPem, /^CERTIFICATE$/);
  if (certs.length === 0) throw new Error("no CERTIFICATE block in the certificate");
  const leaf = parseCertificate(certs[0]);
  certs.slice(1).forEach(parseCertificate);
  const keys = pemBlocks(keyPem, /^PRIVATE KEY$/);
  if (keys.length !== 1) throw new Error("expected one PKCS#8 PRIVATE KEY block in the key");
  const der = keys[0] as Uint8Array<ArrayBuffer>;
  const [version, alg] = children(der, expect(readTlv(der, 0), 0x30, "private key"));
  expect(version, 0x02, "private key version");
  const algorithm = keyAlgorithm(der, alg, "SHA-256");
  const signing = await crypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]).catch((e) => {
    throw new Error(`private key does not load: ${e instanceof Error ? e.message : e}`);
  });
  const probe = new TextEncoder().encode("danm memory TLS probe");
  const sig = await crypto.subtle.sign(verifyParams(algorithm, "SHA-256"), signing, probe);
  const { key, alg: leafAlg } = await importSpki(leaf.spki, "SHA-256");
  if (
    leafAlg.name !== algorithm.name || !(await crypto.subtle.verify(verifyParams(leafAlg, "SHA-256"), key, sig, probe))
  ) {
    throw new Error("the private key does not match the certificate");
  }
  return leaf;
}
