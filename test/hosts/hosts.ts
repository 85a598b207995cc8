import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";

/**
 * Hosts for a test, built from Linux network namespaces: each host a namespace with its own
 * loopback and one veth into a bridge (itself in a namespace of its own), an address from
 * 10.77.0.0/24 that exists only inside these namespaces, and an /etc/netns/<ns>/hosts that
 * resolves every host's name as compose's DNS would. Processes run "on" a host with
 * `ip netns exec`. A host is cut off by taking its veth's bridge end down (no RST, no ICMP:
 * packets vanish, as on a partition) and healed by bringing it up. Everything is removed by
 * `destroy()`, and at process exit if a test crashed before it.
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class Hosts {
  static readonly SUBNET = "10.77.0";
  readonly #prefix: string;
  readonly #names: string[];
  readonly #procs = new Set<ChildProcess>();
  #destroyed = false;

  private constructor(prefix: string, names: string[]) {
    this.#prefix = prefix;
    this.#names = names;
  }

  /** Why these tests cannot run here, or undefined when they can (root and iproute2's `ip`). */
  static missing(): string | undefined {
    if (process.getuid?.() !== 0) return "the hosts tests build network namespaces and need root (run npm test as root)";
    const ip = spawnSync("ip", ["netns", "list"], { encoding: "utf8" });
    if (ip.error || ip.status !== 0) return `the hosts tests need iproute2's 'ip' with netns support (Debian: apt-get install iproute2): ${ip.error?.message ?? ip.stderr.trim()}`;
    return undefined;
  }

  /** Build `names` as hosts; throws with the reason when this machine cannot. */
  static create(names: string[], prefix = `sct${process.pid}`): Hosts {
    const why = Hosts.missing();
    if (why) throw new Error(why);
    if (names.length > 200) throw new Error("at most 200 hosts");
    const h = new Hosts(prefix, names);
    h.#removeStale();
    process.once("exit", () => h.#teardown());
    const br = h.#ns("br");
    h.#ip("netns", "add", br);
    h.#ip("-n", br, "link", "add", "br0", "type", "bridge");
    h.#ip("-n", br, "link", "set", "br0", "up");
    const lines = ["127.0.0.1 localhost", ...names.map((n, i) => `${h.addressOf(n, i)} ${n}`)];
    names.forEach((name, i) => {
      const ns = h.#ns(name);
      h.#ip("netns", "add", ns);
      h.#ip("-n", ns, "link", "set", "lo", "up");
      // One end in the host (eth0), the other on the bridge; created in the host, the peer moved.
      h.#ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", h.#port(i), "netns", br);
      h.#ip("-n", ns, "addr", "add", `${h.addressOf(name, i)}/24`, "dev", "eth0");
      h.#ip("-n", ns, "link", "set", "eth0", "up");
      h.#ip("-n", br, "link", "set", h.#port(i), "master", "br0");
      h.#ip("-n", br, "link", "set", h.#port(i), "up");
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/hosts`, `${lines.join("\n")}\n`);
    });
    return h;
  }

  /** The host's address (only routable inside these namespaces). */
  addressOf(name: string, index = this.#names.indexOf(name)): string {
    if (index < 0) throw new Error(`no host named ${name}`);
    return `${Hosts.SUBNET}.${10 + index}`;
  }

  /** Run a command on a host; its output is piped; it is killed at destroy(). */
  spawn(host: string, cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcess {
    const proc = spawn("ip", ["netns", "exec", this.#ns(host), cmd, ...args], { stdio: ["ignore", "pipe", "pipe"], env: o.env ?? process.env, cwd: o.cwd });
    this.#procs.add(proc);
    proc.once("exit", () => this.#procs.delete(proc));
    return proc;
  }

  /** Run a command on a host to completion. */
  run(host: string, cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync("ip", ["netns", "exec", this.#ns(host), cmd, ...args], { encoding: "utf8", timeout: 10_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Cut the host off the network: its packets vanish (no reset, no unreachable), as on a partition. */
  cut(host: string): void {
    this.#ip("-n", this.#ns("br"), "link", "set", this.#port(this.#index(host)), "down");
  }

  heal(host: string): void {
    this.#ip("-n", this.#ns("br"), "link", "set", this.#port(this.#index(host)), "up");
  }

  /** Kill every process started on the hosts and remove the namespaces and their files. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    const exits = [...this.#procs].map((p) => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(undefined) : p.once("exit", r))));
    this.#teardown();
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  #teardown(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const p of this.#procs) p.kill("SIGKILL");
    for (const name of [...this.#names, "br"]) this.#killAll(this.#ns(name));
    for (const name of this.#names) {
      spawnSync("ip", ["netns", "del", this.#ns(name)]);
      rmSync(`/etc/netns/${this.#ns(name)}`, { recursive: true, force: true });
    }
    spawnSync("ip", ["netns", "del", this.#ns("br")]);
  }

  /** Processes a namespace still holds (a child `ip netns exec` started that outlived it). */
  #killAll(ns: string): void {
    const pids = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout ?? "";
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
  }

  /** Namespaces left by a test process that died before cleaning up (sct<pid>-…, that pid gone), and any of this prefix. */
  #removeStale(): void {
    const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
    for (const line of list.split("\n")) {
      const ns = line.split(" ")[0] ?? "";
      const owner = /^sct(\d+)-/.exec(ns);
      if (ns.startsWith(`${this.#prefix}-`) || (owner && !alive(Number(owner[1])))) {
        this.#killAll(ns);
        spawnSync("ip", ["netns", "del", ns]);
        rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
      }
    }
  }

  #index(host: string): number {
    const i = this.#names.indexOf(host);
    if (i < 0) throw new Error(`no host named ${host}`);
    return i;
  }

  #ns(name: string): string {
    return `${this.#prefix}-${name}`;
  }

  /** The bridge end of host i's veth (interface names are at most 15 characters). */
  #port(i: number): string {
    return `p${i}`;
  }

  #ip(...args: string[]): void {
    const r = spawnSync("ip", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim() || r.error?.message}`);
  }
}
