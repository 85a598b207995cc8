import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";
import { LaunchedServer, spawnServer, type ServerProcess } from "./server-process.js";

const BINARY = process.env.REDIS_SERVER_BIN ?? "/usr/bin/redis-server";
const READY = /Ready to accept connections/;

/** The server's certificate and key, and the CA its clients' certificates must chain to. */
export interface RedisTls {
  cert: string;
  key: string;
  ca: string;
}

/**
 * A real redis-server (Debian's package) for integration tests: bound to 127.0.0.1 on a random
 * port, with a temporary directory removed on stop. The append-only file is on and fsynced at
 * every write, so a kill -9 and restart() keep every entry Redis acknowledged.
 */
export class RedisServer extends LaunchedServer {

  private constructor(readonly dir: string, readonly port: number, private readonly extraArgs: string[], private readonly tls?: RedisTls) {
    super(dir);
  }

  /**
   * `args`: more redis-server options, e.g. ["--requirepass", "secret"]. `tls`: TLS only (the port
   * speaks TLS, `url` is rediss://), clients verified against `ca` (Redis's default).
   */
  static async start(options: { args?: string[]; tls?: RedisTls } = {}): Promise<RedisServer> {
    const server = new RedisServer(mkdtempSync(path.join(os.tmpdir(), "sidecar-redis-")), await freePort(), options.args ?? [], options.tls);
    await server.spawn();
    return server;
  }

  get url(): string {
    return `${this.tls ? "rediss" : "redis"}://127.0.0.1:${this.port}`;
  }


  protected async launch(): Promise<ServerProcess> {
    const listen = this.tls
      ? ["--port", "0", "--tls-port", String(this.port), "--tls-cert-file", this.tls.cert, "--tls-key-file", this.tls.key, "--tls-ca-cert-file", this.tls.ca]
      : ["--port", String(this.port)];
    const args = [
      "--bind", "127.0.0.1", ...listen, "--dir", this.dir,
      "--appendonly", "yes", "--appendfsync", "always", "--save", "",
      "--daemonize", "no", "--logfile", "", "--protected-mode", "no",
      ...this.extraArgs,
    ];
    return (await spawnServer({ name: "redis-server", bin: BINARY, args, ready: READY, timeoutMs: 10_000, packageName: "redis-server" })).server;
  }
}
