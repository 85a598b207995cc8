/** Shared pieces of the benchmarks: child processes, wrk runs and their parsing, tables. */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);

export interface Result {
  name: string;
  connections: number;
  rps: number;
  /** Requests completed in the run (wrk's count). */
  requests: number;
  p50: number;
  p90: number;
  p99: number;
  errors: string;
}

/** Start `node <script> ...args`, resolving with the first line it prints (a port). */
export function startPrinting(script: string, args: string[]): Promise<{ proc: ChildProcess; port: number }> {
  const proc = track(spawn(process.execPath, [path.join(ROOT, script), ...args], { stdio: ["ignore", "pipe", "inherit"] }));
  return new Promise((resolve, reject) => {
    proc.stdout!.once("data", (c: Buffer) => resolve({ proc, port: Number(c.toString().trim()) }));
    proc.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

/**
 * The V8 flags the `sidecar` command runs with: those on dist/cli.js's shebang line
 * (`#!/usr/bin/env -S node <flags>`), so the benchmark measures the sidecar as users start it.
 */
export function cliNodeFlags(): string[] {
  const first = readFileSync(path.join(ROOT, "dist/cli.js"), "utf8").split("\n", 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}

/** Start `sidecar start` with these --set settings (JSON logs); resolves once it logs `ready` (within 60 s). */
export function startSidecar(settings: string[], ready: "registered" | "subscribed"): Promise<{ proc: ChildProcess; api: string }> {
  const proc = track(
    spawn(process.execPath, [...cliNodeFlags(), path.join(ROOT, "dist/cli.js"), "start", ...[...settings, "log.format=json", "log.level=info"].flatMap((s) => ["--set", s])], {
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`sidecar did not log ${ready} within 60 s`));
    }, 60_000);
    let buf = "";
    let api = "";
    proc.stdout!.on("data", (c: Buffer) => {
      buf += c.toString();
      for (let nl; (nl = buf.indexOf("\n")) !== -1; buf = buf.slice(nl + 1)) {
        const line = JSON.parse(buf.slice(0, nl)) as { message: string; api?: string };
        if (line.message === "listening") api = line.api!;
        if (line.message === ready) {
          clearTimeout(timer);
          resolve({ proc, api });
        }
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sidecar exited with ${code}`));
    });
  });
}

function micros(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === "us" ? 1 : m[2] === "ms" ? 1000 : 1_000_000);
}

const wrkArgs = (connections: number, luaFile: string, url: string, seconds: number) => ["-t", "1", "-c", String(connections), "-d", `${seconds}s`, "--latency", "-s", luaFile, url];

function parseWrk(name: string, connections: number, out: string): Result {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in /.exec(out)?.[1]);
  const p50 = micros(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const p90 = micros(/^\s+90%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const p99 = micros(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  const sock = /Socket errors: (.*)/.exec(out)?.[1];
  const errors = [non2xx ? `${non2xx} non-2xx` : "", sock ? `socket: ${sock}` : ""].filter(Boolean).join("; ") || "none";
  return { name, connections, rps, requests, p50, p90, p99, errors };
}

/** One bounded wrk run (1 thread, `seconds`), parsed. */
export function wrk(name: string, url: string, connections: number, luaFile: string, seconds = SECONDS): Result {
  return parseWrk(name, connections, execFileSync("wrk", wrkArgs(connections, luaFile, url, seconds), { encoding: "utf8" }));
}

/** A child's stdout once it exits 0; the child is tracked (killed if we exit first). */
function output(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    track(execFile(file, args, { encoding: "utf8", maxBuffer: 16 * 2 ** 20 }, (err, stdout) => (err ? reject(err) : resolve(stdout))));
  });
}

/**
 * wrk() without blocking our event loop: the children's output is read and a signal handled
 * while the load runs.
 */
export async function wrkAsync(name: string, url: string, connections: number, luaFile: string, seconds = SECONDS): Promise<Result> {
  return parseWrk(name, connections, await output("wrk", wrkArgs(connections, luaFile, url, seconds)));
}

/**
 * `binary` from Debian's `pkg`: its path, installed first when missing and we may (root), else a
 * clear error. Looks in PATH and the sbin directories (nginx, haproxy, nats-server live there).
 */
export function requireDebian(binary: string, pkg: string): string {
  const find = () => {
    const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"].filter(Boolean);
    for (const dir of dirs) {
      const file = path.join(dir, binary);
      try {
        accessSync(file, constants.X_OK);
        return file;
      } catch {
        // not here
      }
    }
    return undefined;
  };
  const found = find();
  if (found) return found;
  if (process.getuid?.() !== 0) throw new Error(`${binary} is not installed: sudo apt-get install -y ${pkg}`);
  process.stderr.write(`${binary} not found: installing Debian's ${pkg} package\n`);
  // RUNLEVEL=1: the package's init script must not start a system-wide daemon (nginx on port 80, ...).
  execFileSync("bash", ["-c", `DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq ${pkg} >/dev/null`], { stdio: "inherit" });
  const installed = find();
  if (!installed) throw new Error(`${binary} could not be installed (Debian package ${pkg})`);
  return installed;
}

/** A loopback port nothing listens on: the OS picks one for a listener on port 0, which is then closed. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(0, "127.0.0.1", () => resolve()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** The median of some numbers (NaN for none). */
export function median(values: number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

const running = new Set<ChildProcess>();
const cleanups = new Set<() => void>();
// A failed or interrupted run leaves nothing behind: what is still running dies with us, and
// the temporary directories go.
process.once("exit", () => {
  for (const p of running) p.kill("SIGKILL");
  for (const f of cleanups) f();
});

/** Run `f` (synchronous) if we exit before `done()` is called. */
export function atExit(f: () => void): { done: () => void } {
  cleanups.add(f);
  return { done: () => cleanups.delete(f) };
}
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) process.once(signal, () => process.exit(code));

/** Remember a child process so that stopAll (or, failing that, our exit) ends it. */
export function track(proc: ChildProcess): ChildProcess {
  running.add(proc);
  proc.once("exit", () => running.delete(proc));
  return proc;
}

/** SIGTERM each process, SIGKILL what is still there after `graceMs`; resolves once all have exited. */
export async function stopAll(procs: ChildProcess[], graceMs = 5000): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    }),
  );
}

/** A markdown table comparing each row with the baseline row of the same connection count. */
export function table(results: Result[], isBaseline: (r: Result) => boolean): string[] {
  const lines = ["| case | connections | requests/s | vs direct | p50 | p99 | added p50 | errors |", "|---|---|---|---|---|---|---|---|"];
  for (const r of results) {
    const base = results.find((b) => b.connections === r.connections && isBaseline(b))!;
    const ratio = r === base ? "1.00" : (r.rps / base.rps).toFixed(2);
    const added = r === base ? "" : `${Math.round(r.p50 - base.p50)} µs`;
    lines.push(`| ${r.name} | ${r.connections} | ${Math.round(r.rps)} | ${ratio} | ${Math.round(r.p50)} µs | ${Math.round(r.p99)} µs | ${added} | ${r.errors} |`);
  }
  return lines;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** Resident memory of a process in MiB, from /proc (Linux). */
export function rssMiB(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return kb / 1024;
}

/** The fixed-rate load of bench/rate.mjs: latency percentiles (µs) at `rate` requests/s. */
export async function atRate(url: string, rate: number, seconds: number, body: string): Promise<{ sent: number; ok: number; p50: number; p90: number; p99: number }> {
  const out = await output(process.execPath, [path.join(ROOT, "bench/rate.mjs"), url, String(rate), String(seconds), body]);
  return JSON.parse(out) as { sent: number; ok: number; p50: number; p90: number; p99: number };
}
