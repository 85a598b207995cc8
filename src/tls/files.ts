import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";

/** PEM file paths as configured (`mesh.tls`, `nats.tls`). */
export interface TlsFiles {
  cert?: string | undefined;
  key?: string | undefined;
  ca?: string | undefined;
}

/** The PEM contents of a TlsFiles. The key is a secret: never log this object. */
export interface TlsMaterial {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

/**
 * Read and check a TLS bundle configured at `at` ("mesh.tls"): every file readable, cert and key
 * given together, PEM that parses and a key that matches its certificate. Problems come back as
 * "<key>: <what is wrong>" so config errors can name the key and the file.
 */
export function readTls(files: TlsFiles, at: string): { material: TlsMaterial; problems: string[] } {
  const problems: string[] = [];
  const material: TlsMaterial = {};
  for (const part of ["cert", "key", "ca"] as const) {
    const file = files[part];
    if (file === undefined) continue;
    try {
      material[part] = readFileSync(file);
    } catch (err) {
      problems.push(`${at}.${part}: cannot read '${file}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (problems.length > 0) return { material, problems };
  if ((files.cert === undefined) !== (files.key === undefined)) {
    const missing = files.cert === undefined ? "cert" : "key";
    return { material, problems: [`${at}.${missing}: required with ${at}.${missing === "cert" ? "key" : "cert"} (a certificate and its private key go together)`] };
  }
  for (const part of ["cert", "ca"] as const) {
    const pem = material[part];
    if (pem === undefined) continue;
    try {
      new X509Certificate(pem);
    } catch (err) {
      problems.push(`${at}.${part}: '${files[part]}' is not a PEM certificate (${(err as Error).message})`);
    }
  }
  if (problems.length > 0) return { material, problems };
  try {
    createSecureContext({ ...material });
  } catch (err) {
    problems.push(`${at}: ${describe(err as Error & { code?: string }, files, at)}`);
  }
  return { material, problems };
}

/** Turn OpenSSL's error into what a user can act on, naming the file. */
function describe(err: Error & { code?: string }, files: TlsFiles, at: string): string {
  const m = err.message;
  if (/key values mismatch/i.test(m)) return `the key '${files.key}' does not belong to the certificate '${files.cert}'`;
  if (/PEM|no start line|bad base64|asn1/i.test(m)) {
    const which = /KEY/i.test(m) || /private/i.test(m) ? `${at}.key '${files.key}'` : `'${files.cert ?? files.ca}'`;
    return `${which} is not valid PEM (${m})`;
  }
  return m;
}

/** readTls for start-up: throws with every problem (the config check already reported them once). */
export function loadTls(files: TlsFiles, at: string): TlsMaterial {
  const { material, problems } = readTls(files, at);
  if (problems.length > 0) throw new Error(`invalid TLS files: ${problems.join("; ")}`);
  return material;
}
