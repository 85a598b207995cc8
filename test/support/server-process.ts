import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

/** A real server a test launcher started (nats-server, etcd, redis-server, rabbitmq-server). */
export interface ServerProcess {
  readonly proc: ChildProcess;
  /** The last 64 KiB it wrote (stdout and stderr), for failure messages. */
  log(): string;
  /** SIGKILL (its whole process group with `group`), resolved once nothing of it is left. */
  kill(): Promise<void>;
}

export interface SpawnOptions {
  /** For messages: "etcd", "redis-server", ... */
  name: string;
  bin: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Resolves once the output matches (the match is returned: a launcher may read a port from it). */
  ready: RegExp;
  timeoutMs: number;
  /** Debian's package, named in the error when the binary cannot run. */
  packageName: string;
  /** Run in its own process group and kill the group: for a script that starts the server as a child (rabbitmq-server). */
  group?: boolean;
}

/**
 * Start a server for a test, bound to what `args` say, and wait for it to say it is ready. A test
 * file that times out or crashes must not leave it running: it is killed when the test process exits.
 */
export async function spawnServer(o: SpawnOptions): Promise<{ server: ServerProcess; ready: RegExpExecArray }> {
  const proc = spawn(o.bin, o.args, { stdio: ["ignore", "pipe", "pipe"], ...(o.env ? { env: o.env } : {}), ...(o.group ? { detached: true } : {}) });
  let log = "";
  const signalGroup = (signal: NodeJS.Signals | 0): boolean => {
    try {
      process.kill(-proc.pid!, signal);
      return true;
    } catch {
      return false; // the group is gone
    }
  };
  const server: ServerProcess = {
    proc,
    log: () => log,
    kill: async () => {
      if (o.group) {
        signalGroup("SIGKILL");
        // Until no process of the group is left (the server holds its ports until then); bounded.
        for (const start = Date.now(); signalGroup(0); ) {
          if (Date.now() - start > 10_000) throw new Error(`${o.name}'s processes did not exit within 10s of SIGKILL`);
          await new Promise((r) => setTimeout(r, 10));
        }
        return;
      }
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGKILL");
      await exited;
    },
  };
  const reap = () => (o.group ? signalGroup("SIGKILL") : proc.kill("SIGKILL"));
  process.once("exit", reap);
  proc.once("exit", () => process.off("exit", reap));
  const ready = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${o.name} did not start within ${o.timeoutMs / 1000}s:\n${log.slice(-4000)}`)), o.timeoutMs);
    const onData = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-65_536);
      const m = o.ready.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${o.bin} (install Debian's ${o.packageName}): ${err.message}`));
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${o.name} exited with ${code}:\n${log.slice(-4000)}`));
    });
  });
  return { server, ready };
}

/**
 * What every launcher does around its one process, written once: `launch()` starts the process
 * on the launcher's own ports and data; kill() leaves the data (so restart() keeps what the
 * server stored), restart() launches again on it, stop() also removes the data directory.
 */
export abstract class LaunchedServer {
  #server: ServerProcess | undefined;

  protected constructor(private readonly dataPath: string) {}

  /** Start the process and resolve once it is ready. */
  protected abstract launch(): Promise<ServerProcess>;

  protected async spawn(): Promise<void> {
    this.#server = await this.launch();
  }

  /** The process id while it runs (benchmarks read its CPU time). */
  get pid(): number | undefined {
    return this.#server?.proc.pid;
  }

  /** SIGKILL; the data stays. */
  async kill(): Promise<void> {
    await this.#server?.kill();
    this.#server = undefined;
  }

  /** Start again on the same ports and data. */
  async restart(): Promise<void> {
    await this.kill();
    await this.spawn();
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dataPath, { recursive: true, force: true });
  }
}
