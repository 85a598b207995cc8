import type { ChildProcess } from "node:child_process";
import type { Hosts } from "./hosts.js";

/** A process on one of the test's hosts, its output kept line by line for waits and failure messages. */
export class HostProcess {
  readonly lines: string[] = [];
  #waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    for (const stream of [proc.stdout!, proc.stderr!]) {
      let buf = "";
      stream.on("data", (c: Buffer) => {
        buf += c.toString();
        const parts = buf.split("\n");
        buf = parts.pop()!;
        if (parts.length === 0) return;
        this.lines.push(...parts);
        if (this.lines.length > 20_000) this.lines.splice(0, this.lines.length - 20_000);
        for (const w of this.#waiters.splice(0)) w();
      });
    }
    proc.once("exit", () => {
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  static start(hosts: Hosts, host: string, name: string, cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): HostProcess {
    return new HostProcess(name, hosts.spawn(host, cmd, args, o));
  }

  get exited(): boolean {
    return this.proc.exitCode !== null || this.proc.signalCode !== null;
  }

  /** Lines matching `re` so far. */
  matching(re: RegExp): string[] {
    return this.lines.filter((l) => re.test(l));
  }

  /** Resolves with the first line (from `from` on) matching `re`; rejects after `timeout` ms or when the process exits. */
  async line(re: RegExp, timeout = 15_000, from = 0): Promise<string> {
    const deadline = Date.now() + timeout;
    for (let seen = from; ; ) {
      for (; seen < this.lines.length; seen++) if (re.test(this.lines[seen]!)) return this.lines[seen]!;
      if (this.exited) throw new Error(`${this.name} exited (${this.proc.exitCode ?? this.proc.signalCode}) before printing ${re}:\n${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name} did not print ${re} within ${timeout}ms:\n${this.tail()}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  tail(n = 40): string {
    return this.lines.slice(-n).join("\n");
  }
}

/** GET a URL from inside a host (its own loopback is not ours), as JSON. */
export function getJson(hosts: Hosts, host: string, url: string): unknown {
  const script = `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })), (e) => { process.stdout.write(JSON.stringify({ error: String(e.cause?.code ?? e.message) })); })`;
  const r = hosts.run(host, process.execPath, ["-e", script]);
  if (r.status !== 0) throw new Error(`node on ${host}: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { status?: number; body?: string; error?: string };
  if (out.error) throw new Error(`GET ${url} on ${host}: ${out.error}`);
  return { status: out.status, body: out.body?.startsWith("{") || out.body?.startsWith("[") ? JSON.parse(out.body) : out.body };
}
