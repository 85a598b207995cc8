import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";
import { LaunchedServer, spawnServer, type ServerProcess } from "./server-process.js";

const BINARY = process.env.NATS_SERVER_BIN ?? "nats-server";
const LISTENING = /Listening for client connections on ([\d.]+):(\d+)/;

/**
 * A real nats-server (Debian's package) for integration tests: JetStream on, bound to
 * 127.0.0.1 on a random port, with a temporary store directory removed on stop.
 */
export class NatsServer extends LaunchedServer {

  private constructor(
    readonly storeDir: string,
    public port: number,
    private readonly extraArgs: string[] = [],
  ) {
    super(storeDir);
  }

  /**
   * A JetStream cluster of `size` servers routed on loopback (name "test", servers s1..sN), for
   * fault tests: replicated KV buckets and streams survive one server going away.
   */
  static async cluster(size = 3): Promise<NatsServer[]> {
    const ports = await Promise.all(Array.from({ length: size * 2 }, () => freePort()));
    const routes = (i: number) => ports.slice(size).filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`).join(",");
    const servers = Array.from({ length: size }, (_, i) => new NatsServer(mkdtempSync(path.join(os.tmpdir(), "sidecar-nats-")), ports[i]!, [
      "-n", `s${i + 1}`, "--cluster_name", "test", "--cluster", `nats://127.0.0.1:${ports[size + i]}`, "--routes", routes(i),
    ]));
    await Promise.all(servers.map((s) => s.spawn()));
    return servers;
  }


  /** One server (on `port`, else a random one); `config` is the text of a nats-server config file (authorization, tls, ...). */
  static async start(options: { config?: string; port?: number } = {}): Promise<NatsServer> {
    const storeDir = mkdtempSync(path.join(os.tmpdir(), "sidecar-nats-"));
    const extra: string[] = [];
    if (options.config !== undefined) {
      const file = path.join(storeDir, "server.conf");
      writeFileSync(file, options.config);
      extra.push("-c", file);
    }
    const server = new NatsServer(storeDir, options.port ?? -1, extra);
    await server.spawn();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  protected async launch(): Promise<ServerProcess> {
    const args = ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.storeDir, ...this.extraArgs];
    const { server, ready } = await spawnServer({ name: "nats-server", bin: BINARY, args, ready: LISTENING, timeoutMs: 10_000, packageName: "nats-server" });
    this.port = Number(ready[2]);
    return server;
  }
}
