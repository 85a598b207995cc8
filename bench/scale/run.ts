/**
 * `npm run bench:scale` (issue 19): what a registry of N nodes costs one sidecar that calls one
 * service. For each N (SCALE_N, default 0,1000,3000,10000): a fresh nats-server (JetStream,
 * loopback, monitoring on), the simulated fleet (bench/scale/fleet.mjs: N nodes of
 * max(1, N/20) services, heartbeated every TTL/3), a callee sidecar of service `target` with its
 * app, and a caller sidecar (service `caller`) driven at SCALE_RATE calls/s of POST /rpc to
 * `target`. After SCALE_WARMUP s, over SCALE_WINDOW s: the caller's CPU and RSS, the messages
 * nats-server sent its connection (/connz), nats-server's CPU, the fleet's achieved puts/s, the
 * calls that failed. Then a second `target` sidecar joins (time from its `registered` log line
 * to its app's first call) and is killed -9 (time until the caller's GET /registry/target no
 * longer lists it).
 *
 * SCALE_BEFORE=<git rev> builds that revision in a temporary worktree and runs every N with it
 * ("before") and then with this checkout's dist/ ("after"). The table goes to stdout and into
 * BENCHMARKS.md (between <!-- scale:begin --> and <!-- scale:end -->).
 *
 * Knobs: SCALE_N, SCALE_WINDOW (s, default 20), SCALE_WARMUP (s, default 10), SCALE_RATE
 * (calls/s, default 100), SCALE_TTL (registry.ttl of every sidecar and the fleet: "15s" default,
 * "6s", "5000ms"; a bare number is seconds), SCALE_PER_SERVICE (fleet nodes per service, default 20),
 * SCALE_LOGS=<dir> (keep every sidecar's JSON log there). Every wait is bounded; whatever the
 * bench started (nats-server, fleet, sidecars, apps, the before worktree) goes with it, on errors
 * and Ctrl-C too.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { atExit, cpuSeconds, freePort, requireDebian, ROOT, rssMiB, startPrinting, stopAll, track } from "../lib.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function seconds(name: string, dflt: number): number {
  const raw = process.env[name];
  const v = raw === undefined || raw === "" ? dflt : Number(raw);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a number of seconds, got ${JSON.stringify(raw)}`);
  return v;
}

/** SCALE_TTL: "15s", "500ms", "1m", or a bare number of seconds; in ms. */
function ttlMs(): number {
  const raw = (process.env.SCALE_TTL ?? "15s").trim();
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(raw);
  const ms = m ? Math.round(Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "m" ? 60_000 : 1000)) : NaN;
  if (!(ms >= 300)) throw new Error(`SCALE_TTL must be a duration of at least 300ms ("15s", "6s", "5000ms"), got ${JSON.stringify(raw)}`);
  return ms;
}

const NS = (process.env.SCALE_N ?? "0,1000,3000,10000").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 0) throw new Error(`SCALE_N must list node counts (0,1000,...), got ${JSON.stringify(process.env.SCALE_N)}`);
  return n;
});
const WINDOW = seconds("SCALE_WINDOW", 20);
const WARMUP = seconds("SCALE_WARMUP", 10);
const RATE = seconds("SCALE_RATE", 100);
const TTL = ttlMs();
const PER_SERVICE = Math.max(1, Math.round(seconds("SCALE_PER_SERVICE", 20)));
const BEFORE = process.env.SCALE_BEFORE?.trim() || undefined;
/** The sidecar's default registry bucket (registry.bucket), which the fleet fills. */
const BUCKET = "sidecar_registry";
/** The Registrar's heartbeat period, and the view's sweep period (registry/view.ts). */
const INTERVAL = Math.max(10, Math.floor(TTL / 3));
const SWEEP = Math.max(50, Math.min(1_000, Math.floor(TTL / 6)));
const servicesFor = (n: number) => Math.max(1, Math.floor(n / PER_SERVICE));
/** Bounds of the waits (every loop here ends). */
const START_LIMIT = 60_000;
const JOIN_LIMIT = 30_000;
/** A kill -9'd node must leave within TTL + one heartbeat (issue 19); 5 s more, then the bench stops waiting. */
const LEAVE_LIMIT = TTL + INTERVAL + 5_000;

// ---------------------------------------------------------------------------------------------
// The builds.

interface Build {
  /** "before" or "after" (or "current" without SCALE_BEFORE), with the revision. */
  label: string;
  cli: string;
  /** The V8 flags on that build's dist/cli.js shebang (as users start it). */
  flags: string[];
}

function git(...args: string[]): string {
  return execFileSync("git", ["-C", ROOT, ...args], { encoding: "utf8" }).trim();
}

function buildAt(root: string, label: string): Build {
  const cli = path.join(root, "dist/cli.js");
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  const first = readFileSync(cli, "utf8").split("\n", 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  return { label, cli, flags: m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [] };
}

/** SCALE_BEFORE's revision, checked out (detached) in a temporary worktree and compiled; removed at exit. */
function buildBefore(rev: string): { build: Build; remove: () => void } {
  const sha = git("rev-parse", "--verify", `${rev}^{commit}`);
  const short = git("rev-parse", "--short", sha);
  const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-scale-before-"));
  const remove = () => {
    try {
      unlinkSync(path.join(dir, "node_modules")); // the link only, before git removes the tree
    } catch {
      /* not made yet */
    }
    try {
      execFileSync("git", ["-C", ROOT, "worktree", "remove", "--force", dir], { stdio: "ignore" });
    } catch {
      /* not added yet */
    }
    rmSync(dir, { recursive: true, force: true });
    try {
      execFileSync("git", ["-C", ROOT, "worktree", "prune"], { stdio: "ignore" });
    } catch {
      /* nothing to prune */
    }
  };
  const interrupted = atExit(remove);
  process.stderr.write(`scale: building ${rev} (${short}) in ${dir}\n`);
  execFileSync("git", ["-C", ROOT, "worktree", "add", "--detach", "--quiet", dir, sha], { stdio: ["ignore", "ignore", "inherit"] });
  symlinkSync(realpathSync(path.join(ROOT, "node_modules")), path.join(dir, "node_modules"));
  execFileSync(path.join(ROOT, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"], { cwd: dir, stdio: "inherit" });
  chmodSync(path.join(dir, "dist/cli.js"), 0o755);
  return {
    build: buildAt(dir, `before (${short})`),
    remove: () => {
      remove();
      interrupted.done();
    },
  };
}

function currentLabel(): string {
  const short = git("rev-parse", "--short", "HEAD");
  const dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src").length > 0;
  return `${short}${dirty ? "+src changes" : ""}`;
}

// ---------------------------------------------------------------------------------------------
// The processes.

/** Lines of a child's stream, each to `onLine`. */
function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = "";
  stream.on("data", (c: Buffer) => {
    buf += c.toString();
    for (let nl; (nl = buf.indexOf("\n")) !== -1; buf = buf.slice(nl + 1)) onLine(buf.slice(0, nl));
  });
}

interface Nats {
  proc: ChildProcess;
  url: string;
  monitor: number;
}

async function startNats(bin: string, storeDir: string): Promise<Nats> {
  const [port, monitor] = [await freePort(), await freePort()];
  const proc = track(spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitor), "-js", "-sd", storeDir], { stdio: ["ignore", "ignore", "pipe"] }));
  const log: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server not ready within 10 s:\n${log.join("\n")}`)), 10_000);
    lines(proc.stderr!, (line) => {
      if (log.length < 200) log.push(line);
      if (line.includes("Server is ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code}:\n${log.join("\n")}`));
    });
  });
  return { proc, url: `nats://127.0.0.1:${port}`, monitor };
}

interface Conn {
  cid: number;
  out_msgs: number;
  out_bytes: number;
}

/** The connection nats-server knows by this client name (its monitoring /connz). */
async function connOf(nats: Nats, name: string): Promise<Conn | undefined> {
  const res = await fetch(`http://127.0.0.1:${nats.monitor}/connz?limit=100000`);
  const body = (await res.json()) as { connections?: (Conn & { name?: string })[] };
  return body.connections?.find((c) => c.name === name);
}

interface FleetStats {
  t: number;
  puts: number;
  failures: number;
  perSec: number;
  targetPerSec: number;
  behind: number;
  lagMs: number;
  keepingUp: boolean;
}

interface Fleet {
  proc: ChildProcess;
  registeredMs: number;
  targetPerSec: number;
  stats: FleetStats[];
}

async function startFleet(nats: Nats, nodes: number, services: number): Promise<Fleet> {
  const proc = track(
    spawn(process.execPath, [path.join(ROOT, "bench/scale/fleet.mjs"), `--servers=${nats.url}`, `--nodes=${nodes}`, `--services=${services}`, `--ttl=${TTL}`, `--bucket=${BUCKET}`], { stdio: ["ignore", "pipe", "inherit"] }),
  );
  const stats: FleetStats[] = [];
  return new Promise<Fleet>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the fleet did not register ${nodes} nodes within ${START_LIMIT / 1000} s`)), START_LIMIT);
    lines(proc.stdout!, (line) => {
      const e = JSON.parse(line) as { event: string; ms?: number; targetPerSec?: number } & FleetStats;
      if (e.event === "stats") stats.push(e);
      if (e.event === "registered") {
        clearTimeout(timer);
        resolve({ proc, registeredMs: e.ms!, targetPerSec: e.targetPerSec!, stats });
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the fleet exited with ${code}`));
    });
  });
}

interface Sidecar {
  proc: ChildProcess;
  api: string;
  node: string;
  /** When it logged `registered` (its log's timestamp; epoch ms). */
  registeredAt: number;
  /** From its log, per node id: when its view logged the node joined, and left or expired. */
  seen: Map<string, { joined?: number; gone?: number }>;
  /** Fleet nodes its view expired (no heartbeat within the TTL). */
  expired: number;
  /** Restarts of its registry watch (stalled or failed: each replays the whole watched set). */
  restarts: number;
  /** Times its view said the registry was unreachable (it then expires nothing, and gives every node a fresh TTL once back). */
  unreachable: number;
}

/** SCALE_LOGS=<dir>: every sidecar's log (JSON lines) is kept there, one file per sidecar, numbered in start order. */
const LOGS = process.env.SCALE_LOGS ? path.resolve(process.env.SCALE_LOGS) : undefined;
if (LOGS) mkdirSync(LOGS, { recursive: true });
let logCount = 0;

/** `sidecar start` of `build` with these settings (JSON logs); resolves once it logs `registered`. */
function startSidecar(build: Build, settings: string[]): Promise<Sidecar> {
  const proc = track(
    spawn(process.execPath, [...build.flags, build.cli, "start", ...[...settings, "log.format=json", "log.level=info"].flatMap((s) => ["--set", s])], {
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  const sidecar: Sidecar = { proc, api: "", node: "", registeredAt: NaN, seen: new Map(), expired: 0, restarts: 0, unreachable: 0 };
  return new Promise<Sidecar>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`a sidecar (${settings.find((s) => s.startsWith("service.name="))}) did not log registered within ${START_LIMIT / 1000} s`));
    }, START_LIMIT);
    const logFile = LOGS ? path.join(LOGS, `${String(++logCount).padStart(3, "0")}-${build.label.split(" ")[0]}-${settings.find((s) => s.startsWith("service.name="))!.slice(13)}.log`) : undefined;
    lines(proc.stdout!, (text) => {
      if (logFile) appendFileSync(logFile, text + "\n");
      let line: { message?: string; api?: string; node?: string; timestamp?: string };
      try {
        line = JSON.parse(text) as typeof line;
      } catch {
        return;
      }
      const at = Date.parse(line.timestamp ?? "") || Date.now();
      if (line.message === "listening") [sidecar.api, sidecar.node] = [line.api!, line.node!];
      if (line.message === "node joined" && line.node) sidecar.seen.set(line.node, { joined: at });
      if ((line.message === "node left" || line.message?.startsWith("node expired")) && line.node) {
        const s = sidecar.seen.get(line.node) ?? {};
        s.gone ??= at;
        sidecar.seen.set(line.node, s);
      }
      if (line.message?.startsWith("node expired") && line.node?.startsWith("fleet-")) sidecar.expired += 1;
      if (/^registry watch (stalled|failed)/.test(line.message ?? "")) sidecar.restarts += 1;
      if (line.message?.startsWith("registry unreachable")) sidecar.unreachable += 1;
      if (line.message === "registered" && Number.isNaN(sidecar.registeredAt)) {
        sidecar.registeredAt = at;
        clearTimeout(timer);
        resolve(sidecar);
      }
    });
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`a sidecar exited with ${code ?? signal} before it registered`));
    });
  });
}

/** The steady load: POST /rpc at `rate` calls/s over a keep-alive pool, for at most `maxSeconds` (and rate × maxSeconds calls). */
class Load {
  sent = 0;
  ok = 0;
  failed = 0;
  readonly reasons = new Map<string, number>();
  #pending = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  readonly #body: string;

  constructor(
    private readonly api: string,
    private readonly rate: number,
    private readonly maxSeconds: number,
  ) {
    this.#body = JSON.stringify({ service: "target", endpoint: "X.Y", request: {} });
  }

  start(): void {
    const t0 = Date.now();
    const total = Math.ceil(this.rate * this.maxSeconds);
    this.#timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * this.rate));
      while (this.sent < due) this.#one();
      if (this.sent >= total) clearInterval(this.#timer);
    }, 2);
  }

  #fail(reason: string): void {
    this.failed += 1;
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
  }

  #one(): void {
    this.sent += 1;
    // A caller that stops answering must not pile up requests here: beyond 512 in flight, a call is counted failed unsent.
    if (this.#pending >= 512) return this.#fail("not sent: 512 in flight");
    this.#pending += 1;
    const [host, port] = this.api.split(":");
    const req = http.request({ host, port: Number(port), path: "/rpc", method: "POST", agent: this.#agent, timeout: 10_000, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(this.#body) } }, (res) => {
      res.resume();
      res.on("end", () => {
        this.#pending -= 1;
        if (res.statusCode! >= 200 && res.statusCode! < 300) this.ok += 1;
        else this.#fail(`HTTP ${res.statusCode}`);
      });
    });
    req.on("timeout", () => req.destroy(new Error("timeout (10 s)")));
    req.on("error", (err: NodeJS.ErrnoException) => {
      this.#pending -= 1;
      this.#fail(err.code ?? err.message);
    });
    req.end(this.#body);
  }

  snapshot(): { sent: number; failed: number } {
    return { sent: this.sent, failed: this.failed };
  }

  /** Stop sending; wait (at most 11 s) for the calls in flight. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    for (const deadline = Date.now() + 11_000; this.#pending > 0 && Date.now() < deadline; ) await sleep(20);
    this.#agent.destroy();
  }
}

async function getJson<T>(url: string): Promise<{ status: number; body: T | undefined }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as T };
  } catch {
    return { status: res.status, body: undefined };
  }
}

// ---------------------------------------------------------------------------------------------
// One case.

interface Row {
  n: number;
  services: number;
  build: string;
  error?: string;
  callerCpu: number;
  callerRss: number;
  /** Messages/s nats-server sent the caller's connection over the window (NaN: not found, or it reconnected). */
  msgsPerSec: number;
  bytesPerSec: number;
  natsCpu: number;
  fleetCpu: number;
  fleet?: { achieved: number; target: number; keptUp: boolean; maxLagMs: number; failures: number; registeredMs: number };
  window: { sent: number; failed: number };
  phases: { sent: number; failed: number };
  reasons: string;
  /** NaN: no call within JOIN_LIMIT (joinTimedOut) or the case failed before. */
  joinMs: number;
  joinTimedOut: boolean;
  /** From the new callee's `registered` log line to its app's first call. */
  joinLogMs: number;
  /** From the new callee's registration to the caller's view logging it joined. */
  joinSeenMs: number;
  /** NaN: still listed LEAVE_LIMIT after the kill (leaveTimedOut) or the case failed before. */
  leaveMs: number;
  leaveTimedOut: boolean;
  /** Fleet nodes the caller's view expired during the case (the fleet fell behind, or its watch did). */
  expired: number;
  /** In the window: the caller's registry watch restarts, and its view's "registry unreachable" spells. */
  restarts: number;
  unreachable: number;
}

const emptyRow = (n: number, build: Build): Row => ({
  n, services: n === 0 ? 0 : servicesFor(n), build: build.label, callerCpu: NaN, callerRss: NaN, msgsPerSec: NaN, bytesPerSec: NaN, natsCpu: NaN, fleetCpu: NaN,
  window: { sent: 0, failed: 0 }, phases: { sent: 0, failed: 0 }, reasons: "", joinMs: NaN, joinLogMs: NaN, joinTimedOut: false, joinSeenMs: NaN, leaveMs: NaN, leaveTimedOut: false, expired: 0, restarts: 0, unreachable: 0,
});

async function runCase(n: number, build: Build, natsBin: string): Promise<Row> {
  const row = emptyRow(n, build);
  const store = mkdtempSync(path.join(os.tmpdir(), "sidecar-scale-nats-"));
  const storeGone = atExit(() => rmSync(store, { recursive: true, force: true }));
  const sidecars: ChildProcess[] = [];
  const others: ChildProcess[] = [];
  let nats: Nats | undefined;
  let load: Load | undefined;
  const step = (what: string) => process.stderr.write(`scale: N=${n} ${build.label}: ${what}\n`);
  try {
    nats = await startNats(natsBin, store);
    const common = ["api.port=0", "inbound.host=127.0.0.1", "inbound.port=0", "registry.kind=nats", `nats.servers=${nats.url}`, `registry.ttl=${TTL}ms`, "app.health.path=/health", "app.health.interval=1s"];
    let fleet: Fleet | undefined;
    if (n > 0) {
      fleet = await startFleet(nats, n, row.services);
      others.push(fleet.proc);
      step(`fleet registered ${n} nodes of ${row.services} services in ${fleet.registeredMs} ms`);
    }
    const app1 = await startPrinting("bench/scale/app.mjs", []);
    others.push(app1.proc);
    const callee = await startSidecar(build, ["service.name=target", `app.port=${app1.port}`, ...common]);
    sidecars.push(callee.proc);
    const callerApp = await startPrinting("bench/scale/app.mjs", []);
    others.push(callerApp.proc);
    const caller = await startSidecar(build, ["service.name=caller", `app.port=${callerApp.port}`, ...common]);
    sidecars.push(caller.proc);
    // The first call may wait for the caller's view of `target`: ready once one call succeeds.
    for (const deadline = Date.now() + START_LIMIT; ; ) {
      const res = await fetch(`http://${caller.api}/rpc`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ service: "target", endpoint: "X.Y", request: {} }), signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
      if (res?.ok) break;
      if (Date.now() > deadline) throw new Error(`the caller could not call target within ${START_LIMIT / 1000} s (last: ${res ? `HTTP ${res.status}` : "no answer"})`);
      await sleep(100);
    }
    const caseSeconds = WARMUP + WINDOW + JOIN_LIMIT / 1000 + LEAVE_LIMIT / 1000 + 30;
    load = new Load(caller.api, RATE, caseSeconds);
    load.start();
    step(`caller ready, ${RATE} calls/s; warm-up ${WARMUP} s, window ${WINDOW} s`);
    await sleep(WARMUP * 1000);

    // The window.
    const callerPid = caller.proc.pid!;
    const natsPid = nats.proc.pid!;
    const fleetPid = fleet?.proc.pid;
    const read = async () => ({ t: Date.now(), caller: cpuSeconds(callerPid), nats: cpuSeconds(natsPid), fleet: fleetPid ? cpuSeconds(fleetPid) : 0, conn: await connOf(nats!, "sidecar-caller"), load: load!.snapshot() });
    const w0 = await read();
    const [expired0, restarts0, unreachable0] = [caller.expired, caller.restarts, caller.unreachable];
    const fleetAt0 = fleet?.stats.length ?? 0;
    await sleep(WINDOW * 1000);
    const w1 = await read();
    row.callerRss = rssMiB(callerPid);
    [row.restarts, row.unreachable] = [caller.restarts - restarts0, caller.unreachable - unreachable0];
    const wall = (w1.t - w0.t) / 1000;
    row.callerCpu = ((w1.caller - w0.caller) / wall) * 100;
    row.natsCpu = ((w1.nats - w0.nats) / wall) * 100;
    row.fleetCpu = fleetPid ? ((w1.fleet - w0.fleet) / wall) * 100 : NaN;
    if (w0.conn && w1.conn && w0.conn.cid === w1.conn.cid) {
      row.msgsPerSec = (w1.conn.out_msgs - w0.conn.out_msgs) / wall;
      row.bytesPerSec = (w1.conn.out_bytes - w0.conn.out_bytes) / wall;
    }
    row.window = { sent: w1.load.sent - w0.load.sent, failed: w1.load.failed - w0.load.failed };
    if (fleet) {
      // The stats lines that bracket the window (one a second).
      const within = fleet.stats.slice(Math.max(0, fleetAt0 - 1));
      const s0 = within[0];
      const s1 = within[within.length - 1];
      const achieved = s0 && s1 && s1.t > s0.t ? ((s1.puts - s0.puts) * 1000) / (s1.t - s0.t) : NaN;
      row.fleet = {
        achieved, target: fleet.targetPerSec, keptUp: within.slice(1).every((s) => s.keepingUp), maxLagMs: Math.max(0, ...within.slice(1).map((s) => s.lagMs)),
        failures: s0 && s1 ? s1.failures - s0.failures : 0, registeredMs: fleet.registeredMs,
      };
    }
    step(`window: caller ${row.callerCpu.toFixed(1)} % CPU, ${row.callerRss.toFixed(1)} MiB, ${row.msgsPerSec.toFixed(0)} msgs/s; nats-server ${row.natsCpu.toFixed(1)} %; fleet ${row.fleet ? `${row.fleet.achieved.toFixed(0)} of ${row.fleet.target.toFixed(0)} puts/s` : "none"}; ${row.window.failed} of ${row.window.sent} calls failed`);

    // Join: a second node of `target`, from its registration to its app's first call. Its
    // registration is its first put, as the server stamped it (a busy sidecar logs `registered`
    // late: the put's acknowledgement waits in its event loop behind the watch's replay).
    const firstPut = new Map<string, number>();
    const nc = await connect({ servers: nats.url, name: "scale-bench" });
    try {
      const kvWatch = await (await new Kvm(nc).open(BUCKET)).watch({ key: "target.*" });
      void (async () => {
        for await (const e of kvWatch) if (e.operation === "PUT" && !firstPut.has(e.key)) firstPut.set(e.key, e.created.getTime());
      })().catch(() => undefined);
      await joinCase(row, build, common, caller, others, sidecars, firstPut);
    } finally {
      await nc.close().catch(() => undefined);
    }
    const end = load.snapshot();
    row.phases = { sent: end.sent - w1.load.sent, failed: end.failed - w1.load.failed };
    row.expired = caller.expired - expired0;
  } catch (err) {
    row.error = (err as Error).message.split("\n")[0]!;
    step(`failed: ${(err as Error).message}`);
  } finally {
    await load?.stop();
    if (load) row.reasons = [...load.reasons].map(([k, v]) => `${k} × ${v}`).join(", ");
    await stopAll(sidecars, 3_000);
    await stopAll(others, 2_000);
    if (nats) await stopAll([nats.proc], 3_000);
    rmSync(store, { recursive: true, force: true });
    storeGone.done();
  }
  return row;
}

/** The join and the leave of a second `target` node (see runCase). */
async function joinCase(row: Row, build: Build, common: string[], caller: Sidecar, others: ChildProcess[], sidecars: ChildProcess[], firstPut: Map<string, number>): Promise<void> {
  const step = (what: string) => process.stderr.write(`scale: N=${row.n} ${build.label}: ${what}\n`);
  const app2 = await startPrinting("bench/scale/app.mjs", []);
  others.push(app2.proc);
  const callee2 = await startSidecar(build, ["service.name=target", `app.port=${app2.port}`, ...common]);
  sidecars.push(callee2.proc);
  const registeredAt = () => Math.min(callee2.registeredAt, firstPut.get(`target.${callee2.node}`) ?? Infinity);
  for (const deadline = callee2.registeredAt + JOIN_LIMIT; ; ) {
    const c = (await getJson<{ count: number; first: number }>(`http://127.0.0.1:${app2.port}/count`)).body;
    if (c && c.count > 0) {
      row.joinMs = c.first - registeredAt();
      row.joinLogMs = c.first - callee2.registeredAt;
      break;
    }
    if (Date.now() > deadline) {
      row.joinTimedOut = true;
      break;
    }
    await sleep(10);
  }
  const joined = caller.seen.get(callee2.node)?.joined;
  if (joined !== undefined) row.joinSeenMs = joined - registeredAt();
  step(`join: ${Number.isNaN(row.joinMs) ? `no call within ${JOIN_LIMIT / 1000} s` : `first call ${Math.round(row.joinMs)} ms after registration`}`);

  // Leave: kill -9 it, until the caller's view no longer lists it.
  const exited = new Promise((r) => callee2.proc.once("exit", r));
  callee2.proc.kill("SIGKILL");
  const killedAt = Date.now();
  await exited;
  for (const deadline = killedAt + LEAVE_LIMIT; ; ) {
    const r = await getJson<{ nodes?: { id: string }[] }>(`http://${caller.api}/registry/target`).catch(() => undefined);
    if (r && (r.status === 404 || (r.status === 200 && !r.body?.nodes?.some((x) => x.id === callee2.node)))) {
      row.leaveMs = Date.now() - killedAt;
      break;
    }
    if (Date.now() > deadline) {
      row.leaveTimedOut = true;
      break;
    }
    await sleep(100);
  }
  step(`leave: ${Number.isNaN(row.leaveMs) ? `still listed after ${LEAVE_LIMIT / 1000} s` : `gone from the caller's view ${Math.round(row.leaveMs)} ms after kill -9`}`);
}

// ---------------------------------------------------------------------------------------------
// The table.

const num = (v: number, digits = 0) => (Number.isNaN(v) ? "—" : v.toFixed(digits));

function table(rows: Row[]): string[] {
  const out = [
    "| N (services) | build | caller CPU % | caller RSS MiB | registry msgs/s to caller | nats-server CPU % | fleet puts/s achieved (due) | failed calls: window; join + leave | join ms | leave ms |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const n = r.n === 0 ? "0" : `${r.n} (${r.services})`;
    if (r.error) {
      out.push(`| ${n} | ${r.build} | failed: ${r.error.replace(/\|/g, "/")} | | | | | | | |`);
      continue;
    }
    const fleet = r.fleet ? `${num(r.fleet.achieved)} (${num(r.fleet.target)})${r.fleet.keptUp ? "" : ` **behind: up to ${num(r.fleet.maxLagMs)} ms late**`}${r.fleet.failures ? `, ${r.fleet.failures} failed` : ""}` : "—";
    out.push(
      `| ${n} | ${r.build} | ${num(r.callerCpu, 1)} | ${num(r.callerRss, 1)} | ${num(r.msgsPerSec)} | ${num(r.natsCpu, 1)} | ${fleet} | ${r.window.failed} of ${r.window.sent}; ${r.phases.failed} of ${r.phases.sent} | ${r.joinTimedOut ? `**> ${JOIN_LIMIT}**` : num(r.joinMs)} | ${r.leaveTimedOut ? `**> ${LEAVE_LIMIT}**` : num(r.leaveMs)} |`,
    );
  }
  return out;
}

function details(rows: Row[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    if (r.error) continue;
    const parts = [
      `registry ${num(r.bytesPerSec / 1024, 1)} KiB/s to the caller`,
      ...(r.fleet ? [`fleet registered in ${r.fleet.registeredMs} ms, fleet process ${num(r.fleetCpu, 1)} % CPU`] : []),
      `join: the caller's view logged the new node ${num(r.joinSeenMs)} ms after its first put, its app's first call came ${num(r.joinLogMs)} ms after its own \`registered\` log line`,
      ...(r.restarts + r.unreachable > 0 ? [`**in the window the caller restarted its registry watch ${r.restarts} times and its view called the registry unreachable ${r.unreachable} times** (each restart replays every record it watches; while unreachable its view expires no node, and once back gives every node a fresh TTL)`] : []),
      ...(r.expired > 0 ? [`**the caller's view expired ${r.expired} fleet nodes** (missed heartbeats)`] : []),
      ...(r.reasons ? [`failures: ${r.reasons}`] : []),
    ];
    out.push(`- N=${r.n}, ${r.build}: ${parts.join("; ")}.`);
  }
  // The issue's target: beside 10,000 nodes within 1.5× of the figures with no fleet.
  const builds = [...new Set(rows.map((r) => r.build))];
  const ratios: string[] = [];
  for (const b of builds) {
    const ok = rows.filter((r) => r.build === b && !r.error);
    const zero = ok.find((r) => r.n === 0);
    const top = ok.filter((r) => r.n > 0).sort((x, y) => y.n - x.n)[0];
    if (!zero || !top) continue;
    const cpu = top.callerCpu / zero.callerCpu;
    const rss = top.callerRss / zero.callerRss;
    const mark = (x: number) => (x <= 1.5 ? "within 1.5×" : "**over 1.5×**");
    ratios.push(`- ${b}: caller CPU at N=${top.n} ÷ N=0: ${cpu.toFixed(2)}× (${mark(cpu)}); RSS: ${rss.toFixed(2)}× (${mark(rss)}).`);
  }
  return [...out, ...(ratios.length ? ["", "Against the issue's target (caller CPU and memory beside the largest fleet within 1.5× of no fleet):", "", ...ratios] : [])];
}

function command(): string {
  const env = Object.entries(process.env)
    .filter(([k, v]) => k.startsWith("SCALE_") && v !== undefined && v !== "")
    .map(([k, v]) => `${k}=${v}`);
  return [...env, "npm run bench:scale"].join(" ");
}

function section(rows: Row[], natsVersion: string, started: Date, minutes: number): string[] {
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const ms = [...new Set(NS.filter((n) => n > 0).map((n) => `${n} → ${servicesFor(n)}`))].join(", ");
  return [
    "## Scale (issue 19)",
    "",
    `Written by \`npm run bench:scale\` (bench/scale/run.ts). Command: \`${command()}\`. Run: ${started.toISOString()}, ${minutes.toFixed(1)} min.`,
    "",
    `Machine: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}, ${natsVersion} (Debian's package), everything on loopback.`,
    "On 2 cores the fleet, nats-server, the sidecars and the load share the CPU: compare rows of one run, not runs of different machines.",
    "",
    `Parameters: registry TTL ${TTL / 1000} s (heartbeat every ${INTERVAL / 1000} s), so the fleet's due rate is N ÷ ${INTERVAL / 1000} puts/s; fleet services M = max(1, N/${PER_SERVICE}) (${ms || "no fleet"}), services named fleet-0001…, none called; load ${RATE} calls/s of POST /rpc to \`target\` (one node, two during join and leave); warm-up ${WARMUP} s, window ${WINDOW} s. Each N × build: a fresh nats-server with JetStream, the fleet (\`bench/scale/fleet.mjs\`: one process, one connection, at most 256 puts in flight, node i re-put at offset i·(TTL/3)/N of each interval), a \`target\` sidecar and app, a \`caller\` sidecar and app.`,
    "",
    ...table(rows),
    "",
    "Columns: CPU % is user + system time over the window's wall time (100 % = one core). RSS: VmRSS at the end of the window. Registry msgs/s: the delta of `out_msgs` of the caller's connection (client name `sidecar-caller`) in nats-server's `/connz`: everything the server sent that connection (KV watch deliveries, replies to its own JetStream requests and heartbeat puts, consumer heartbeats and flow control), over the window. Fleet puts/s: the fleet's completed puts over the window (its stats lines bracketing it), the due rate in brackets; **behind** when a put left more than max(250 ms, TTL/30) after its due time. Failed calls: non-2xx or no answer, in the window, and during join and leave. Join: from the new `target` sidecar's registration (its first put, as nats-server stamped it, seen by a watch of `target.*` on a connection of the bench's own; its `registered` log line if earlier) to its app's first call. Leave: from its kill -9 to the caller's `GET /registry/target` no longer listing it (polled every 100 ms); the record was last refreshed up to TTL/3 before the kill, so expect TTL − TTL/3 to TTL plus one sweep (" + `${SWEEP} ms` + `); the issue's bound is TTL + one heartbeat (${(TTL + INTERVAL) / 1000} s), and the bench stops waiting at ${LEAVE_LIMIT / 1000} s (> in the table).`,
    "",
    ...details(rows),
    "",
  ];
}

function writeBenchmarks(lines: string[]): void {
  const file = path.join(ROOT, "BENCHMARKS.md");
  const block = ["<!-- scale:begin -->", ...lines, "<!-- scale:end -->"].join("\n");
  const marked = /<!-- scale:begin -->[\s\S]*?<!-- scale:end -->/;
  let text = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmarks\n";
  text = marked.test(text) ? text.replace(marked, () => block) : `${text.replace(/\n*$/, "")}\n\n${block}\n`;
  writeFileSync(file, text);
}

async function main(): Promise<void> {
  const started = new Date();
  const natsBin = requireDebian("nats-server", "nats-server");
  const natsVersion = execFileSync(natsBin, ["--version"], { encoding: "utf8" }).trim();
  const before = BEFORE ? buildBefore(BEFORE) : undefined;
  const builds = [...(before ? [before.build] : []), buildAt(ROOT, `${before ? "after" : "current"} (${currentLabel()})`)];
  const rows: Row[] = [];
  try {
    for (const n of NS) for (const b of builds) rows.push(await runCase(n, b, natsBin));
  } finally {
    before?.remove();
  }
  const lines = section(rows, natsVersion, started, (Date.now() - started.getTime()) / 60_000);
  writeBenchmarks(lines);
  process.stdout.write(lines.join("\n"));
  if (rows.some((r) => r.error)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:scale failed: ${(err as Error).message}\n`);
  process.exit(1);
});
