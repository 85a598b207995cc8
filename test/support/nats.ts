import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";

const BINARY = process.env.NATS_SERVER_BIN ?? "nats-server";
const LISTENING = /Listening for client connections on ([\d.]+):(\d+)/;

/**
 * A real nats-server (Debian's package) for integration tests: JetStream on, bound to
 * 127.0.0.1 on a random port, with a temporary store directory removed on stop.
 */
export class NatsServer {
  #proc: ChildProcess | undefined;
  #log = "";

  private constructor(
    readonly storeDir: string,
    public port: number,
    private readonly extraArgs: string[] = [],
  ) {}

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
    await Promise.all(servers.map((s) => s.#spawn()));
    return servers;
  }

  /** The server's process id (benchmarks read its CPU time). */
  get pid(): number | undefined {
    return this.#proc?.pid;
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
    await server.#spawn();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async #spawn(): Promise<void> {
    const proc = spawn(BINARY, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.storeDir, ...this.extraArgs], { stdio: ["ignore", "pipe", "pipe"] });
    this.#proc = proc;
    // A test file that times out or crashes must not leave its server running.
    const reap = () => proc.kill("SIGKILL");
    process.once("exit", reap);
    proc.once("exit", () => process.off("exit", reap));
    this.port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start within 10s:\n${this.#log}`)), 10_000);
      const onData = (chunk: Buffer) => {
        this.#log += chunk.toString();
        const m = LISTENING.exec(this.#log);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[2]));
        }
      };
      proc.stderr!.on("data", onData);
      proc.stdout!.on("data", onData);
      proc.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot run ${BINARY} (install Debian's nats-server): ${err.message}`));
      });
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}:\n${this.#log}`));
      });
    });
  }

  /** Stop the process (the store stays, so restart() keeps JetStream data). */
  async kill(): Promise<void> {
    const proc = this.#proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }

  /** Start again on the same port and store. */
  async restart(): Promise<void> {
    await this.kill();
    this.#log = "";
    await this.#spawn();
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
