import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";

/** Debian's server script, run directly: the /usr/sbin wrapper switches to the rabbitmq user. */
const BINARY = process.env.RABBITMQ_SERVER_BIN ?? "/usr/lib/rabbitmq/bin/rabbitmq-server";
const READY = /Server startup complete/;

/**
 * A real RabbitMQ node (Debian's rabbitmq-server) for integration tests: a private node
 * (its own name, Erlang cookie and data directory in a temp dir) with its AMQP listener on
 * 127.0.0.1 at a random port, no plugins. The data stays across restart().
 */
export class RabbitServer {
  #proc: ChildProcess | undefined;
  #log = "";

  private constructor(readonly dir: string, readonly port: number, private readonly distPort: number) {}

  static async start(): Promise<RabbitServer> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-rabbit-"));
    const server = new RabbitServer(dir, await freePort(), await freePort());
    await server.#spawn();
    return server;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  /** The last 64 KiB the node logged (for failure messages). */
  get log(): string {
    return this.#log;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  /** The Erlang VM's process id (the script's child, in its process group): benchmarks read its CPU time. */
  get vmPid(): number | undefined {
    const group = this.#proc?.pid;
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

  async #spawn(): Promise<void> {
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
      // Host names from /etc/hosts only: with no DNS server reachable, a lookup of this machine's
      // name stalls the boot for about ten seconds.
      ERL_INETRC: path.join(d, "erl_inetrc"),
    };
    writeFileSync(path.join(d, "erl_inetrc"), `{lookup, [file]}.\n{host, {127,0,0,1}, ["localhost", "${os.hostname()}"]}.\n`);
    writeFileSync(path.join(d, "rabbitmq.conf"), "loopback_users = none\n");
    // Its own process group: the script starts the Erlang VM (and epmd) as children, and kill()
    // must take them all.
    const proc = spawn(BINARY, [], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.#proc = proc;
    // A test file that times out or crashes must not leave its server running.
    const reap = () => this.#killGroup();
    process.once("exit", reap);
    proc.once("exit", () => process.off("exit", reap));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`rabbitmq-server did not start within 60s:\n${this.#log.slice(-4000)}`)), 60_000);
      const onData = (chunk: Buffer) => {
        this.#log = (this.#log + chunk.toString()).slice(-65_536);
        if (READY.test(this.#log)) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stderr!.on("data", onData);
      proc.stdout!.on("data", onData);
      proc.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot run ${BINARY} (install Debian's rabbitmq-server): ${err.message}`));
      });
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`rabbitmq-server exited with ${code}:\n${this.#log.slice(-4000)}`));
      });
    });
  }

  #killGroup(): boolean {
    const pid = this.#proc?.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, "SIGKILL");
      return true;
    } catch {
      return false; // the group is gone
    }
  }

  /** Kill the node (SIGKILL to its process group: the script, the Erlang VM; the data directory stays). */
  async kill(): Promise<void> {
    if (!this.#proc) return;
    this.#killGroup();
    // Wait until no process of the group is left (the VM holds the ports until then).
    const start = Date.now();
    while (this.#alive()) {
      if (Date.now() - start > 10_000) throw new Error("rabbitmq-server's processes did not exit within 10s of SIGKILL");
      await new Promise((r) => setTimeout(r, 10));
    }
    this.#proc = undefined;
  }

  #alive(): boolean {
    const pid = this.#proc?.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** Start again on the same port, node name and data. */
  async restart(): Promise<void> {
    await this.kill();
    this.#log = "";
    await this.#spawn();
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
