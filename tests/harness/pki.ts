// A tiny test PKI built with the openssl CLI: one CA, leaf certificates for servers and clients.
// createPki(dir) reuses the CA already in dir, so test processes can issue certificates from the
// CA of the apiserver the runner started.
import { run } from "./proc.ts";

export interface KeyPair {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface Pki {
  readonly dir: string;
  readonly ca: KeyPair;
  /** Issues a serving certificate for the given DNS names and IP addresses. */
  server(name: string, sans: { dns?: string[]; ips?: string[] }): Promise<KeyPair>;
  /** Issues a client certificate (CN = user, O = groups). */
  client(name: string, user: string, groups: string[]): Promise<KeyPair>;
}

const read = (p: string) => Deno.readTextFile(p);

export async function createPki(dir: string): Promise<Pki> {
  await Deno.mkdir(dir, { recursive: true });
  const caKey = `${dir}/ca.key`, caCrt = `${dir}/ca.crt`;
  const exists = await Deno.stat(caCrt).then(() => true, () => false);
  if (!exists) {
    await run([
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "3",
      "-subj",
      "/CN=danm-test-ca",
      "-keyout",
      caKey,
      "-out",
      caCrt,
    ]);
  }
  const ca: KeyPair = { certFile: caCrt, keyFile: caKey, certPem: await read(caCrt), keyPem: await read(caKey) };

  let serial = 0;
  const issue = async (base: string, subject: string, ext: string): Promise<KeyPair> => {
    // Unique file names so that several processes sharing one PKI directory never clash.
    const name = `${base}-${Deno.pid}-${serial++}`;
    const key = `${dir}/${name}.key`,
      csr = `${dir}/${name}.csr`,
      crt = `${dir}/${name}.crt`,
      extFile = `${dir}/${name}.ext`;
    await Deno.writeTextFile(extFile, ext);
    await run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", key, "-out", csr]);
    await run([
      "openssl",
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      caCrt,
      "-CAkey",
      caKey,
      "-set_serial",
      String(Math.floor(Math.random() * 2 ** 48)),
      "-days",
      "3",
      "-extfile",
      extFile,
      "-out",
      crt,
    ]);
    return { certFile: crt, keyFile: key, certPem: await read(crt), keyPem: await read(key) };
  };

  return {
    dir,
    ca,
    server: (name, sans) => {
      const alt = [...(sans.dns ?? []).map((d) => `DNS:${d}`), ...(sans.ips ?? []).map((i) => `IP:${i}`)].join(",");
      return issue(
        name,
        `/CN=${name}`,
        `subjectAltName=${alt}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
      );
    },
    client: (name, user, groups) => {
      const subject = `/CN=${user}` + groups.map((g) => `/O=${g}`).join("");
      return issue(
        name,
        subject,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
      );
    },
  };
}
