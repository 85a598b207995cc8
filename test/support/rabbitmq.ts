import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";
import { LaunchedServer, spawnServer, type ServerProcess } from "./server-process.js";

/** Debian's server script, run directly: the /usr/sbin wrapper switches to the rabbitmq user. */
const BINARY = process.env.RABBITMQ_SERVER_BIN ?? "/usr/lib/rabbitmq/bin/rabbitmq-server";
const READY = /Server startup complete/;

/**
 * A real RabbitMQ node (Debian's rabbitmq-server) for integration tests: a private node
 * (its own name, Erlang cookie and data directory in a temp dir) with its AMQP listener on
 * 127.0.0.1 at a random port, no plugins. The data stays across restart().
 */
export class RabbitServer extends LaunchedServer {

  private constructor(readonly dir: string, readonly port: number, private readonly distPort: number) {
    super(dir);
  }

  static async start(): Promise<RabbitServer> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-rabbit-"));
    const server = new RabbitServer(dir, await freePort(), await freePort());
    await server.spawn();
    return server;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }


  /** The Erlang VM's process id (the script's child, in its process group): benchmarks read its CPU time. */
  get vmPid(): number | undefined {
    const group = this.pid;
    if (group === undefined) return undefined;
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (Number(fields[2]) === group && stat.includes("(beam.smp)")) return Number(entry);
      } catch {
        // gone meanwhile
      }
    }
    return undefined;
  }

  protected async launch(): Promise<ServerProcess> {
    const d = this.dir;
    mkdirSync(path.join(d, "log"), { recursive: true });
    writeFileSync(path.join(d, "enabled_plugins"), "[].\n");
    const env = {
      PATH: process.env.PATH,
      HOME: d, // the Erlang cookie goes here
      RABBITMQ_NODENAME: `sidecar-test-${this.port}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
      ERL_EPMD_ADDRESS: "127.0.0.1", // epmd (started by the first node) listens on loopback only
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: path.join(d, "mnesia"),
      RABBITMQ_LOG_BASE: path.join(d, "log"),
      RABBITMQ_LOGS: "-",
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(d, "enabled_plugins"),
      RABBITMQ_CONFIG_FILE: path.join(d, "rabbitmq"),
    };
    writeFileSync(path.join(d, "rabbitmq.conf"), "loopback_users = none\n");
    // Its own process group: the script starts the Erlang VM (and epmd) as children, and kill()
    // must take them all.
    return (await spawnServer({ name: "rabbitmq-server", bin: BINARY, args: [], env, ready: READY, timeoutMs: 60_000, packageName: "rabbitmq-server", group: true })).server;
  }
}
