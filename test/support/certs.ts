import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface Issued {
  cert: string;
  key: string;
}

/**
 * A throw-away certificate authority made with openssl (Debian's package) in a temp dir: a CA,
 * and certificates it signs for 127.0.0.1/localhost with a given subject CN, good for both
 * server and client authentication. ECDSA P-256, valid for a day.
 */
export class TestCa {
  readonly cert: string;
  readonly #key: string;

  private constructor(readonly dir: string, name: string) {
    this.cert = path.join(dir, `${name}.crt`);
    this.#key = path.join(dir, `${name}.key`);
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", this.#key, "-out", this.cert, "-days", "1", "-subj", `/CN=${name}`]);
  }

  static create(name = "test-ca", dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-ca-"))): TestCa {
    return new TestCa(dir, name);
  }

  /** A certificate (CN=`cn`; SAN 127.0.0.1 and localhost, or the DNS names `hosts`) and its key, signed by this CA. */
  issue(cn: string, hosts?: string[]): Issued {
    const base = path.join(this.dir, `${cn}-${hosts ? `${hosts.join("_")}-` : ""}${path.basename(this.cert, ".crt")}`);
    const ext = `${base}.ext`;
    const san = hosts ? hosts.map((h) => `DNS:${h}`).join(",") : "IP:127.0.0.1,DNS:localhost";
    writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`);
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${cn}`]);
    openssl(["x509", "-req", "-in", `${base}.csr`, "-CA", this.cert, "-CAkey", this.#key, "-CAcreateserial", "-out", `${base}.crt`, "-days", "1", "-extfile", ext]);
    return { cert: `${base}.crt`, key: `${base}.key` };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    throw new Error(`openssl ${args[0]} failed (is Debian's openssl installed?): ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`);
  }
}
