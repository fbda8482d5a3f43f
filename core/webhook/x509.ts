// Self-signed CA and serving certificates from WebCrypto (ECDSA P-256, SHA-256) and the DER encoder: what the
// webhook's certificate bootstrap needs, with nothing to download or exec.
import { Effect, Schema } from "effect";
import { parseIp } from "../net/ip.ts";
import {
  bitString,
  boolean,
  type Der,
  explicit,
  implicitPrimitive,
  namedBits,
  octetString,
  oid,
  pem,
  sequence,
  set,
  smallInteger,
  time,
  unpem,
  unsignedInteger,
  utf8String,
} from "./der.ts";

export class CertificateError extends Schema.TaggedError<CertificateError>()("CertificateError", {
  operation: Schema.String,
  detail: Schema.String,
}) {
  override get message(): string {
    return `${this.operation}: ${this.detail}`;
  }
}

export interface PemPair {
  readonly certPem: string;
  /** PKCS#8 private key. */
  readonly keyPem: string;
}

export interface IssuedCertificate extends PemPair {
  readonly notAfter: Date;
}

const ecdsa = { name: "ECDSA", namedCurve: "P-256" } as const;
const ecdsaWithSha256 = () => sequence(oid("1.2.840.10045.4.3.2"));
const name = (commonName: string) => sequence(set(sequence(oid("2.5.4.3"), utf8String(commonName))));
const extension = (id: string, critical: boolean, value: Der) =>
  critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));

const bytes = (b: ArrayBuffer): Uint8Array<ArrayBuffer> => new Uint8Array(b);

/** WebCrypto signs ECDSA as r‖s; X.509 wants SEQUENCE { INTEGER r, INTEGER s }. */
function ecdsaSignatureDer(raw: Uint8Array): Der {
  const half = raw.length / 2;
  return sequence(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

function serialNumber(): Der {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] &= 0x7f; // positive
  b[0] |= 0x01; // and non-zero
  return unsignedInteger(b);
}

async function publicKeyOf(
  privateKey: CryptoKey,
): Promise<{ spki: Uint8Array<ArrayBuffer>; raw: Uint8Array<ArrayBuffer> }> {
  // A P-256 private key's JWK carries the public point (x, y).
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  const pub = await crypto.subtle.importKey("jwk", { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, ecdsa, true, [
    "verify",
  ]);
  return {
    spki: bytes(await crypto.subtle.exportKey("spki", pub)),
    raw: bytes(await crypto.subtle.exportKey("raw", pub)),
  };
}

const keyId = async (rawPublicKey: Uint8Array<ArrayBuffer>) =>
  bytes(await crypto.subtle.digest("SHA-1", rawPublicKey)).subarray(0, 20);

function ipBytes(text: string): Uint8Array {
  const ip = parseIp(text);
  if (!ip) throw new Error(`"${text}" is not an IP address`);
  const n = ip.family === 4 ? 4 : 16;
  const out = new Uint8Array(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

interface TbsInput {
  readonly issuer: string;
  readonly subject: string;
  readonly spki: Uint8Array<ArrayBuffer>;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly extensions: ReadonlyArray<Der>;
}

async function sign(tbs: TbsInput, signer: CryptoKey): Promise<string> {
  const tbsDer = sequence(
    explicit(0, smallInteger(2)), // v3
    serialNumber(),
    ecdsaWithSha256(),
    name(tbs.issuer),
    sequence(time(tbs.notBefore), time(tbs.notAfter)),
    name(tbs.subject),
    tbs.spki,
    explicit(3, sequence(...tbs.extensions)),
  );
  const sig = bytes(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, signer, tbsDer));
  return pem("CERTIFICATE", sequence(tbsDer, ecdsaWithSha256(), bitString(ecdsaSignatureDer(sig))));
}

const days = (n: number) => n * 24 * 3600 * 1000;
// A little slack for clocks that are behind the issuer's.
const backdated = (now: Date) => new Date(now.getTime() - 5 * 60 * 1000);

async function createCaAsync(commonName: string, validityDays: number, now: Date): Promise<IssuedCertificate> {
  const keys = await crypto.subtle.generateKey(ecdsa, true, ["sign", "verify"]);
  const spki = bytes(await crypto.subtle.exportKey("spki", keys.publicKey));
  const ski = await keyId(bytes(await crypto.subtle.exportKey("raw", keys.publicKey)));
  const notAfter = new Date(now.getTime() + days(validityDays));
  const certPem = await sign({
    issuer: commonName,
    subject: commonName,
    spki,
    notBefore: backdated(now),
    notAfter,
    extensions: [
      extension("2.5.29.19", true, sequence(boolean(true))), // basicConstraints CA:TRUE
      extension("2.5.29.15", true, namedBits([0, 5, 6])), // digitalSignature, keyCertSign, cRLSign
      extension("2.5.29.14", false, octetString(ski)),
    ],
  }, keys.privateKey);
  const keyPem = pem("PRIVATE KEY", bytes(await crypto.subtle.exportKey("pkcs8", keys.privateKey)));
  return { certPem, keyPem, notAfter };
}

export interface ServingCertificateRequest {
  readonly commonName: string;
  readonly dnsNames: ReadonlyArray<string>;
  readonly ipAddresses: ReadonlyArray<string>;
  readonly validityDays: number;
}

async function issueAsync(ca: PemPair, req: ServingCertificateRequest, now: Date): Promise<IssuedCertificate> {
  const caKey = await crypto.subtle.importKey("pkcs8", unpem(ca.keyPem), ecdsa, true, ["sign"]);
  const caPub = await publicKeyOf(caKey);
  const caSubject = caCommonName(ca.certPem);
  const keys = await crypto.subtle.generateKey(ecdsa, true, ["sign", "verify"]);
  const spki = bytes(await crypto.subtle.exportKey("spki", keys.publicKey));
  const ski = await keyId(bytes(await crypto.subtle.exportKey("raw", keys.publicKey)));
  const sans = [
    ...req.dnsNames.map((d) => implicitPrimitive(2, new TextEncoder().encode(d))),
    ...req.ipAddresses.map((ip) => implicitPrimitive(7, ipBytes(ip))),
  ];
  const notAfter = new Date(now.getTime() + days(req.validityDays));
  const certPem = await sign({
    issuer: caSubject,
    subject: req.commonName,
    spki,
    notBefore: backdated(now),
    notAfter,
    extensions: [
      extension("2.5.29.19", true, sequence()), // basicConstraints CA:FALSE
      extension("2.5.29.15", true, namedBits([0])), // digitalSignature
      extension("2.5.29.37", false, sequence(oid("1.3.6.1.5.5.7.3.1"))), // serverAuth
      extension("2.5.29.17", false, sequence(...sans)),
      extension("2.5.29.14", false, octetString(ski)),
      extension("2.5.29.35", false, sequence(implicitPrimitive(0, await keyId(caPub.raw)))),
    ],
  }, caKey);
  const keyPem = pem("PRIVATE KEY", bytes(await crypto.subtle.exportKey("pkcs8", keys.privateKey)));
  return { certPem, keyPem, notAfter };
}

/**
 * The subject CN of a certificate we issued (issuer names must match byte for byte). Our certificates put the
 * CN right after the validity; reading it back keeps the CA's name out of the Secret's metadata.
 */
export function caCommonName(certPem: string): string {
  const der = unpem(certPem);
  // Find the last occurrence of the CN attribute OID followed by a UTF8String: the subject comes after the issuer.
  const needle = [0x06, 0x03, 0x55, 0x04, 0x03, 0x0c];
  let found = -1;
  for (let i = 0; i + needle.length < der.length; i++) {
    if (needle.every((b, j) => der[i + j] === b)) found = i;
  }
  if (found < 0) throw new Error("no commonName in the CA certificate");
  const len = der[found + needle.length];
  if (len >= 0x80) throw new Error("the CA certificate's commonName is too long");
  const start = found + needle.length + 1;
  return new TextDecoder().decode(der.subarray(start, start + len));
}

export const createCa = (commonName: string, validityDays: number, now: Date = new Date()) =>
  Effect.tryPromise({
    try: () => createCaAsync(commonName, validityDays, now),
    catch: (e) => new CertificateError({ operation: "creating the CA certificate", detail: String(e) }),
  });

export const issueServingCertificate = (ca: PemPair, req: ServingCertificateRequest, now: Date = new Date()) =>
  Effect.tryPromise({
    try: () => issueAsync(ca, req, now),
    catch: (e) =>
      new CertificateError({ operation: `issuing the serving certificate for ${req.commonName}`, detail: String(e) }),
  });
