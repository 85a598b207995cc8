/** Shared pieces of the benchmarks: child processes, wrk runs and their parsing, tables. */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);

export interface Result {
  name: string;
  connections: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  errors: string;
}

/** Start `node <script> ...args`, resolving with the first line it prints (a port). */
export function startPrinting(script: string, args: string[]): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, [path.join(ROOT, script), ...args], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    proc.stdout!.once("data", (c: Buffer) => resolve({ proc, port: Number(c.toString().trim()) }));
    proc.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

/** Start `sidecar start` with these --set settings (JSON logs); resolves once it logs `ready`. */
/**
 * The V8 flags the `sidecar` command runs with: those on dist/cli.js's shebang line
 * (`#!/usr/bin/env -S node <flags>`), so the benchmark measures the sidecar as users start it.
 */
export function cliNodeFlags(): string[] {
  const first = readFileSync(path.join(ROOT, "dist/cli.js"), "utf8").split("\n", 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}

export function startSidecar(settings: string[], ready: "registered" | "subscribed"): Promise<{ proc: ChildProcess; api: string }> {
  const proc = spawn(process.execPath, [...cliNodeFlags(), path.join(ROOT, "dist/cli.js"), "start", ...[...settings, "log.format=json", "log.level=info"].flatMap((s) => ["--set", s])], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let buf = "";
    let api = "";
    proc.stdout!.on("data", (c: Buffer) => {
      buf += c.toString();
      for (let nl; (nl = buf.indexOf("\n")) !== -1; buf = buf.slice(nl + 1)) {
        const line = JSON.parse(buf.slice(0, nl)) as { message: string; api?: string };
        if (line.message === "listening") api = line.api!;
        if (line.message === ready) resolve({ proc, api });
      }
    });
    proc.once("exit", (code) => reject(new Error(`sidecar exited with ${code}`)));
  });
}

function micros(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === "us" ? 1 : m[2] === "ms" ? 1000 : 1_000_000);
}

/** One bounded wrk run (1 thread, `seconds`), parsed. */
export function wrk(name: string, url: string, connections: number, luaFile: string, seconds = SECONDS): Result {
  const out = execFileSync("wrk", ["-t", "1", "-c", String(connections), "-d", `${seconds}s`, "--latency", "-s", luaFile, url], { encoding: "utf8" });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = micros(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const p90 = micros(/^\s+90%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const p99 = micros(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "");
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  const sock = /Socket errors: (.*)/.exec(out)?.[1];
  const errors = [non2xx ? `${non2xx} non-2xx` : "", sock ? `socket: ${sock}` : ""].filter(Boolean).join("; ") || "none";
  return { name, connections, rps, p50, p90, p99, errors };
}

/** wrk from Debian's package: installed when missing and we may (root), else a clear error. */
export function requireWrk(): void {
  const present = () => {
    try {
      execFileSync("wrk", ["-v"], { stdio: "ignore" });
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code !== "ENOENT";
    }
  };
  if (present()) return;
  if (process.getuid?.() !== 0) throw new Error("wrk is not installed: sudo apt-get install -y wrk");
  process.stderr.write("wrk not found: installing Debian's wrk package\n");
  execFileSync("bash", ["-c", "DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq wrk >/dev/null"], { stdio: "inherit" });
  if (!present()) throw new Error("wrk could not be installed");
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
export function atRate(url: string, rate: number, seconds: number, body: string): { sent: number; ok: number; p50: number; p90: number; p99: number } {
  const out = execFileSync(process.execPath, [path.join(ROOT, "bench/rate.mjs"), url, String(rate), String(seconds), body], { encoding: "utf8" });
  return JSON.parse(out) as { sent: number; ok: number; p50: number; p90: number; p99: number };
}
