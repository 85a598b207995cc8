import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config/index.js";
import { createLogger, silentLogger } from "../../src/log.js";
import { Sidecar } from "../../src/sidecar.js";
import { EventLog } from "./events.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = path.join(ROOT, "dist", "cli.js");
const EMPTY_DIR = mkdtempSync(path.join(os.tmpdir(), "sidecar-cwd-"));

/** Poll `cond` every 10 ms until it holds; fail with `what` after `timeout` ms. Never a blind sleep. */
export async function waitFor<T>(cond: () => T | Promise<T>, what: string, timeout = 5_000): Promise<NonNullable<T>> {
  const start = Date.now();
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() - start > timeout) throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Fast settings for tests: short health interval and TTL, loopback everywhere, port 0. */
export function testSettings(o: { service: string; appPort: number; registry: { dir: string } | { nats: string } | { etcd: string }; extra?: string[] }): string[] {
  const reg =
    "dir" in o.registry ? [`registry.kind=local`, `registry.dir=${o.registry.dir}`]
    : "etcd" in o.registry ? [`registry.kind=etcd`, `etcd.endpoints=${o.registry.etcd}`]
    : [`registry.kind=nats`, `nats.servers=${o.registry.nats}`];
  return [
    `service.name=${o.service}`,
    `app.port=${o.appPort}`,
    `app.health.path=/health`,
    `app.health.interval=100ms`,
    `app.health.failureThreshold=2`,
    `app.health.timeout=500ms`,
    `api.host=127.0.0.1`,
    `api.port=0`,
    `inbound.host=127.0.0.1`,
    `inbound.port=0`,
    `registry.ttl=1500ms`,
    `shutdownTimeout=2s`,
    ...reg,
    ...(o.extra ?? []),
  ];
}

/** An in-process sidecar (fast; for most tests). Logs go nowhere unless SIDECAR_TEST_LOG is set. */
export async function startSidecar(settings: string[]): Promise<Sidecar> {
  const { config } = loadConfig({ set: settings, env: {}, cwd: EMPTY_DIR });
  const log = process.env.SIDECAR_TEST_LOG ? createLogger({ level: "debug", format: "pretty", stream: process.stderr }).child({ sc: config.service.name }) : silentLogger();
  const sidecar = new Sidecar(config, log);
  try {
    await sidecar.start();
  } catch (err) {
    await sidecar.close(); // a half-started sidecar must not keep the test process alive
    throw err;
  }
  return sidecar;
}

/** A sidecar as users run it: `node dist/cli.js start`, JSON logs parsed from stdout. */
export class SidecarProcess {
  readonly lines: Record<string, unknown>[] = [];
  stderr = "";
  private constructor(readonly proc: ChildProcess) {
    let buf = "";
    proc.stdout!.on("data", (c: Buffer) => {
      buf += c.toString();
      let nl;
      while ((nl = buf.indexOf("\n")) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          this.lines.push({ message: line });
        }
      }
    });
    proc.stderr!.on("data", (c: Buffer) => (this.stderr += c.toString()));
  }

  static spawn(args: string[], env: NodeJS.ProcessEnv = {}): SidecarProcess {
    // An empty working directory: the repository's example sidecar.yaml must not leak into tests.
    const proc = spawn(process.execPath, [CLI, ...args], {
      cwd: EMPTY_DIR,
      env: { PATH: process.env.PATH, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    return new SidecarProcess(proc);
  }

  /** Start with `--set` settings and JSON logs; resolves once the app is registered (its `registered` event). */
  static async start(settings: string[]): Promise<SidecarProcess> {
    const p = SidecarProcess.spawn(["start", ...[...settings, "log.format=json"].flatMap((s) => ["--set", s])]);
    const token = settings.find((s) => s.startsWith("api.token="))?.slice("api.token=".length);
    await p.registered(10_000, token);
    return p;
  }

  /**
   * The process's GET /events stream. Its api address is the one thing read from its log (the
   * `api listening` line: a process on port 0 has no other way to say where it listens).
   */
  async events(token?: string, timeout = 10_000): Promise<EventLog> {
    const api = await this.waitForLog("api listening", timeout);
    return EventLog.stream(`http://${String(api.api)}`, token ? { token } : {});
  }

  /** Resolves at the process's `registered` event (seen already or to come). */
  async registered(timeout = 10_000, token?: string): Promise<void> {
    const events = await this.events(token, timeout);
    try {
      await events.next("registered", () => true, timeout);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nstderr: ${this.stderr}`, { cause: err });
    } finally {
      events.close();
    }
  }

  find(message: string): Record<string, unknown> | undefined {
    return this.lines.find((l) => l.message === message);
  }

  waitForLog(message: string, timeout = 5_000): Promise<Record<string, unknown>> {
    return waitFor(() => {
      if (this.proc.exitCode !== null) throw new Error(`sidecar exited with ${this.proc.exitCode} before logging '${message}':\n${this.stderr}\n${JSON.stringify(this.lines)}`);
      return this.find(message);
    }, `log line '${message}'`, timeout);
  }

  get apiUrl(): string {
    return `http://${String(this.find("listening")!.api)}`;
  }

  get nodeId(): string {
    return String(this.find("listening")!.node);
  }

  /** The exit code (null when killed by a signal). */
  async exit(): Promise<number | null> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.proc.exitCode;
    const [code] = (await once(this.proc, "exit")) as [number | null];
    return code;
  }

  kill(signal: NodeJS.Signals): void {
    this.proc.kill(signal);
  }
}

/**
 * POST JSON to a sidecar's /rpc and return status, headers and the parsed or raw body.
 * `body` is `any` on purpose: tests read fields of many different shapes and assert each one.
 */
export async function rpc(base: string, envelope: unknown, init: { headers?: Record<string, string> } = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${base}/rpc`, { method: "POST", headers: { "content-type": "application/json", ...init.headers }, body: typeof envelope === "string" ? envelope : JSON.stringify(envelope) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body, headers: res.headers };
}

export function apiUrl(s: Sidecar): string {
  return `http://${s.apiAddress}`;
}

/** Ids of a service's nodes in a sidecar's view (GET /registry/{service}); [] for an unknown service. */
export async function registryNodes(base: string, service: string): Promise<string[]> {
  const res = await fetch(`${base}/registry/${service}`);
  if (res.status === 404) return [];
  const body = (await res.json()) as { nodes: { id: string }[] };
  return body.nodes.map((n) => n.id);
}

/** Everything a test file started, stopped in order: child sidecars killed, in-process ones closed, apps, then NATS. */
export async function teardown(o: { procs?: SidecarProcess[]; sidecars?: Sidecar[]; apps?: { stop(): Promise<void> }[]; nats?: { stop(): Promise<void> } }): Promise<void> {
  for (const p of o.procs ?? []) if (p.proc.exitCode === null && p.proc.signalCode === null) p.kill("SIGKILL");
  await Promise.all((o.sidecars ?? []).map((s) => s.close()));
  await Promise.all((o.apps ?? []).map((a) => a.stop()));
  await o.nats?.stop();
}
