/**
 * The request path: the same echo app called directly; through two hops of each kind, the same
 * topology as two sidecars (wrk → hop1 → hop2 → app): two minimal standard-library forwarding
 * hops (the floor of any Node sidecar pair), nginx → nginx, HAProxy → HAProxy, Caddy → Caddy
 * (bench/peers.ts); and through two sidecars (/rpc, raw /rpc, /proxy) on a NATS registry. In
 * interleaved rounds, reported as medians: sequential latency (one connection), throughput at 32
 * connections, latency at a fixed 1000 requests/s, and each hop's CPU and memory. Loopback only;
 * every load is bounded in time.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import { NatsServer } from "../test/support/nats.js";
import { atExit, atRate, cpuSeconds, median, requireDebian, rssMiB, startPrinting, startSidecar, stopAll, wrkAsync as wrk, type Result } from "./lib.js";
import { startPeerPair, type PeerKind } from "./peers.js";

const RATE = 1000;
const RATE_SECONDS = Number(process.env.BENCH_RATE_SECONDS ?? 5);
/** Rounds; each runs every case at 1 and at 32 connections and at the fixed rate, in the same order. */
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Warm-up of each Node case (app, floor, sidecars), at 8 connections then at 1, before anything is measured. */
export const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP ?? 3);
/** nginx, HAProxy and Caddy have no JIT to warm: one short run at 8 connections. */
export const PEER_WARMUP_SECONDS = Math.min(1, WARMUP_SECONDS);
/** Quiet time after the load before memory is read again. */
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE ?? 30);

/** Two hops of one kind, whose processes' CPU and memory the cost table reports. */
interface Hops {
  name: string;
  /** [label, pid] of hop1 (the one the client calls) and hop2 (the one calling the app). */
  hops: [string, number][];
}

interface Case {
  name: string;
  url: string;
  lua: string;
  body: string;
  /** node: WARMUP_SECONDS at 8 connections, then at 1 (V8's JIT); native: PEER_WARMUP_SECONDS at 8. */
  warmup: "node" | "native";
  /** The hops whose CPU this case's 32-connection run measures. */
  cost?: Hops;
}

interface Rated {
  name: string;
  sent: number;
  ok: number;
  p50: number;
  p90: number;
  p99: number;
}

/** "3 interleaved rounds" (or "1 round"). */
export const rounds = () => (ROUNDS === 1 ? "1 round" : `${ROUNDS} interleaved rounds`);
const us = (v: number) => `${Math.round(v)} µs`;
const mib = (v: number) => `${v.toFixed(1)} MiB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The rounds of one case and connection count as one row: the median of each metric. */
function mid(rounds: Result[]): Result {
  const errors = rounds.map((r) => r.errors).filter((e) => e !== "none");
  return {
    name: rounds[0]!.name,
    connections: rounds[0]!.connections,
    rps: median(rounds.map((r) => r.rps)),
    requests: rounds.reduce((n, r) => n + r.requests, 0),
    p50: median(rounds.map((r) => r.p50)),
    p90: median(rounds.map((r) => r.p90)),
    p99: median(rounds.map((r) => r.p99)),
    errors: errors.length ? errors.join("; ") : "none",
  };
}

function midRated(rounds: Rated[]): Rated {
  return {
    name: rounds[0]!.name,
    sent: rounds.reduce((n, r) => n + r.sent, 0),
    ok: rounds.reduce((n, r) => n + r.ok, 0),
    p50: median(rounds.map((r) => r.p50)),
    p90: median(rounds.map((r) => r.p90)),
    p99: median(rounds.map((r) => r.p99)),
  };
}

export async function rpcBench(): Promise<string[]> {
  if (!(ROUNDS >= 1)) throw new Error(`BENCH_ROUNDS must be at least 1, not ${process.env.BENCH_ROUNDS}`);
  requireDebian("nats-server", "nats-server");
  const tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-bench-"));
  const removeTmp = () => rmSync(tmp, { recursive: true, force: true });
  const interrupted = atExit(removeTmp);
  const procs: ChildProcess[] = [];
  let nats: NatsServer | undefined;
  let natsInterrupted: { done: () => void } | undefined;
  const sequential: Result[][] = [];
  const loaded: Result[][] = [];
  const rated: Rated[][] = [];
  /** Per pair and hop: CPU s per 1000 requests of each round. */
  const cpu = new Map<string, number[][]>();
  const pairs: Hops[] = [];
  let idle = new Map<number, number>();
  let after = idle;
  let settled = idle;
  try {
    const app = await startPrinting("bench/echo-app.mjs", []);
    procs.push(app.proc);
    const hop2 = await startPrinting("bench/forwarder.mjs", ["node-http", String(app.port)]);
    procs.push(hop2.proc);
    const hop1 = await startPrinting("bench/forwarder.mjs", ["node-http", String(hop2.port)]);
    procs.push(hop1.proc);
    const pair = async (kind: PeerKind) => {
      const p = await startPeerPair(kind, app.port, tmp);
      procs.push(...p.procs);
      return p;
    };
    const peers = { nginx: await pair("nginx"), haproxy: await pair("haproxy"), caddy: await pair("caddy") };

    // The sidecars as they run in production: a NATS registry (a private nats-server; JetStream
    // for its key-value bucket), the http transport between them.
    nats = await NatsServer.start();
    const store = nats.storeDir;
    natsInterrupted = atExit(() => rmSync(store, { recursive: true, force: true }));
    const common = ["api.port=0", "inbound.host=127.0.0.1", "inbound.port=0", "registry.kind=nats", `nats.servers=${nats.url}`, "app.health.path=/health", "app.health.interval=1s"];
    const callee = await startSidecar([`service.name=echo`, `app.port=${app.port}`, ...common], "registered");
    procs.push(callee.proc);
    const caller = await startSidecar([`service.name=bench`, `app.port=${app.port}`, ...common], "registered");
    procs.push(caller.proc);
    for (let i = 0; ; i++) {
      if ((await fetch(`http://${caller.api}/registry/echo`)).status === 200) break;
      if (i === 400) throw new Error("the caller sidecar did not see the echo service in the registry within 10 s");
      await sleep(25);
    }

    const floorHops: Hops = { name: "floor: two node:http hops", hops: [["hop1", hop1.proc.pid!], ["hop2", hop2.proc.pid!]] };
    const peerHops = (kind: PeerKind): Hops => ({ name: peers[kind].name, hops: [["hop1", peers[kind].pids[0]!], ["hop2", peers[kind].pids[1]!]] });
    const sidecarHops: Hops = { name: "two sidecars", hops: [["caller", caller.proc.pid!], ["callee", callee.proc.pid!]] };
    pairs.push(floorHops, peerHops("nginx"), peerHops("haproxy"), peerHops("caddy"), sidecarHops);

    const body = JSON.stringify({ hello: "world", n: 42 });
    const envelopeBody = JSON.stringify({ service: "echo", endpoint: "Echo.Call", request: JSON.parse(body) });
    const lua = (name: string, b: string) => {
      const f = path.join(tmp, `${name}.lua`);
      writeFileSync(f, `wrk.method = "POST"\nwrk.body = '${b}'\nwrk.headers["Content-Type"] = "application/json"\n`);
      return f;
    };
    const raw = lua("raw", body);
    const envelope = lua("envelope", envelopeBody);
    const peerCase = (kind: PeerKind): Case => ({ name: peers[kind].name, url: `${peers[kind].url}/Echo/Call`, lua: raw, body, warmup: "native", cost: peerHops(kind) });
    const cases: Case[] = [
      { name: "direct: the app alone", url: `http://127.0.0.1:${app.port}/Echo/Call`, lua: raw, body, warmup: "node" },
      { name: floorHops.name, url: `http://127.0.0.1:${hop1.port}/Echo/Call`, lua: raw, body, warmup: "node", cost: floorHops },
      peerCase("nginx"),
      peerCase("haproxy"),
      peerCase("caddy"),
      { name: "two sidecars: POST /rpc (JSON envelope)", url: `http://${caller.api}/rpc`, lua: envelope, body: envelopeBody, warmup: "node", cost: sidecarHops },
      { name: "two sidecars: POST /rpc/echo/Echo.Call (raw)", url: `http://${caller.api}/rpc/echo/Echo.Call`, lua: raw, body, warmup: "node" },
      { name: "two sidecars: POST /proxy/echo/Echo/Call", url: `http://${caller.api}/proxy/echo/Echo/Call`, lua: raw, body, warmup: "node" },
    ];
    const rss = () => new Map(pairs.flatMap((p) => p.hops.map(([, pid]) => [pid, rssMiB(pid)] as const)));
    idle = rss();

    // Steady state, not start-up: V8 keeps optimizing the sidecar's paths for about 10 s of
    // traffic, and until then one connection's p99 reads 2-4 ms where it settles near 1 ms.
    for (const c of cases) {
      if (c.warmup === "native" && PEER_WARMUP_SECONDS > 0) await wrk("warm-up", c.url, 8, c.lua, PEER_WARMUP_SECONDS);
      if (c.warmup === "node" && WARMUP_SECONDS > 0) {
        await wrk("warm-up", c.url, 8, c.lua, WARMUP_SECONDS);
        await wrk("warm-up", c.url, 1, c.lua, WARMUP_SECONDS);
      }
    }
    // Interleaved rounds: a slow patch of the shared machine lands on every case alike.
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, c] of cases.entries()) (sequential[i] ??= []).push(await wrk(c.name, c.url, 1, c.lua));
      for (const [i, c] of cases.entries()) {
        const pids = c.cost?.hops.map(([, pid]) => pid) ?? [];
        const before = pids.map(cpuSeconds);
        const r = await wrk(c.name, c.url, 32, c.lua);
        (loaded[i] ??= []).push(r);
        if (c.cost) {
          const perHop = pids.map((pid, h) => ((cpuSeconds(pid) - before[h]!) / r.requests) * 1000);
          const rows = cpu.get(c.cost.name) ?? pids.map(() => []);
          perHop.forEach((v, h) => rows[h]!.push(v));
          cpu.set(c.cost.name, rows);
        }
      }
      for (const [i, c] of cases.entries()) (rated[i] ??= []).push({ name: c.name, ...(await atRate(c.url, RATE, RATE_SECONDS, c.body)) });
    }
    after = rss();
    // Resident memory right after load is young-generation garbage that V8 has not collected yet;
    // its memory reducer collects and shrinks the heap once allocation stays low for a while.
    await sleep(SETTLE_SECONDS * 1000);
    settled = rss();
  } finally {
    await stopAll(procs);
    await nats?.stop();
    natsInterrupted?.done();
    removeTmp();
    interrupted.done();
  }

  const seq = sequential.map(mid);
  const load = loaded.map(mid);
  const rate = rated.map(midRated);
  const row = <T extends { name: string }>(rows: T[], prefix: string) => rows.find((r) => r.name.startsWith(prefix))!;
  const [seqDirect, loadDirect, loadFloor, loadCaddy, rateDirect, rateFloor] = [row(seq, "direct"), row(load, "direct"), row(load, "floor"), row(load, "Caddy"), row(rate, "direct"), row(rate, "floor")];
  const seqCaddy = row(seq, "Caddy");
  const sidecarRow = <T extends { name: string }>(rows: T[], part: string) => rows.find((r) => r.name.startsWith("two sidecars") && r.name.includes(part))!;
  const [rpcSeq, rpcRate] = [sidecarRow(seq, "/rpc ("), sidecarRow(rate, "/rpc (")];
  const cpuPer1000 = (pair: Hops, h: number) => median(cpu.get(pair.name)?.[h] ?? []);
  /** The worst (highest) of a pair's two hops. */
  const worstHop = (pair: Hops, f: (h: number, pid: number) => number) => Math.max(...pair.hops.map(([, pid], h) => f(h, pid)));
  const sidecars = pairs.find((p) => p.name === "two sidecars")!;
  const caddy = pairs.find((p) => p.name.startsWith("Caddy"))!;
  const sidecarCpu = worstHop(sidecars, (h) => cpuPer1000(sidecars, h));
  const caddyCpu = worstHop(caddy, (h) => cpuPer1000(caddy, h));
  const memAfter = worstHop(sidecars, (_h, pid) => after.get(pid)!);
  const memIdle = worstHop(sidecars, (_h, pid) => idle.get(pid)!);
  const check = (ok: boolean) => (ok ? "holds" : "**misses**");
  const throughputTarget = (part: string, label: string) => {
    const r = sidecarRow(load, part);
    return `- throughput at 32 connections, ${label} ÷ the Caddy pair: ${(r.rps / loadCaddy.rps).toFixed(2)} (target ≥ 1.0): ${check(r.rps >= loadCaddy.rps)}`;
  };
  const costCase = (pair: Hops) => (pair === sidecars ? "POST /rpc" : "its own case");
  return [
    "## Request path",
    "",
    `The same echo app (\`bench/echo-app.mjs\`) called directly, and through two hops of each kind, the sidecars' topology (wrk → hop1 → hop2 → app): two minimal \`node:http\` forwarding hops (\`bench/forwarder.mjs\`, the floor of any Node sidecar pair); nginx → nginx, HAProxy → HAProxy and Caddy → Caddy (\`bench/peers.ts\`: each hop one process with one worker or thread — nginx \`master_process off\`, HAProxy \`nbthread 1\`, Caddy \`GOMAXPROCS=1\` — keep-alive upstreams, no access logs; Caddy is Go's \`net/http\` reverse proxy, the stand-in for a Go sidecar); and app → caller sidecar → callee sidecar → app (NATS registry on a private nats-server, http transport).`,
    "",
    `${rounds()}: each runs every case at one connection, then every case at 32, then every case at ${RATE} requests/s, in this order; each figure is the median of the rounds (requests/s, p50, p90 and p99 each on its own). Added latency is a case's median minus the app's.`,
    "",
    "### One connection, sequential calls (added latency)",
    "",
    "| case | p50 | p90 | p99 | added p50 | added p99 |",
    "|---|---|---|---|---|---|",
    ...seq.map((r) => `| ${r.name} | ${us(r.p50)} | ${us(r.p90)} | ${us(r.p99)} | ${r === seqDirect ? "" : us(r.p50 - seqDirect.p50)} | ${r === seqDirect ? "" : us(r.p99 - seqDirect.p99)} |`),
    "",
    "### 32 connections (throughput)",
    "",
    "| case | requests/s | ÷ direct | ÷ floor | ÷ Caddy pair | p50 | p99 | errors |",
    "|---|---|---|---|---|---|---|---|",
    ...load.map((r) => `| ${r.name} | ${Math.round(r.rps)} | ${(r.rps / loadDirect.rps).toFixed(2)} | ${(r.rps / loadFloor.rps).toFixed(2)} | ${(r.rps / loadCaddy.rps).toFixed(2)} | ${us(r.p50)} | ${us(r.p99)} | ${r.errors} |`),
    "",
    `### A fixed ${RATE} requests/s for ${RATE_SECONDS} s per round (\`bench/rate.mjs\`)`,
    "",
    "| case | p50 | p90 | p99 | added p90 | added p99 | ok / sent (all rounds) |",
    "|---|---|---|---|---|---|---|",
    ...rate.map((r) => `| ${r.name} | ${us(r.p50)} | ${us(r.p90)} | ${us(r.p99)} | ${r === rateDirect ? "" : us(r.p90 - rateDirect.p90)} | ${r === rateDirect ? "" : us(r.p99 - rateDirect.p99)} | ${r.ok} / ${r.sent} |`),
    "",
    "### Cost of each hop",
    "",
    `Resident memory (VmRSS; about 40 MiB of a Node process is the node binary itself): idle before the load, right after the last load, and ${SETTLE_SECONDS} s later with no traffic. CPU (user + system) of each hop's process per 1000 requests, over the 32-connection run of the pair's own case (the sidecars: POST /rpc), median of the rounds. nats-server (the sidecars' registry) is not on the request path and not counted.`,
    "",
    `| hops | hop | idle | right after load | ${SETTLE_SECONDS} s after load | CPU s per 1000 requests (32 connections) |`,
    "|---|---|---|---|---|---|",
    ...pairs.flatMap((p) => p.hops.map(([label, pid], h) => `| ${p.name} (${costCase(p)}) | ${label} | ${mib(idle.get(pid)!)} | ${mib(after.get(pid)!)} | ${mib(settled.get(pid)!)} | ${cpuPer1000(p, h).toFixed(3)} |`)),
    "",
    "### Targets (issue 17)",
    "",
    "Per hop: the worst of the two (caller or callee; hop1 or hop2).",
    "",
    throughputTarget("/rpc (", "/rpc"),
    throughputTarget("/rpc/echo", "raw /rpc"),
    throughputTarget("/proxy", "/proxy"),
    `- added p50, one connection, /rpc: ${us(rpcSeq.p50 - seqDirect.p50)} (target ≤ the Caddy pair's, ${us(seqCaddy.p50 - seqDirect.p50)}): ${check(rpcSeq.p50 - seqDirect.p50 <= seqCaddy.p50 - seqDirect.p50)}`,
    `- added p99 at ${RATE} requests/s, /rpc: ${us(rpcRate.p99 - rateDirect.p99)} (target ≤ 2 × the Node floor's, ${us(2 * (rateFloor.p99 - rateDirect.p99))}): ${check(rpcRate.p99 - rateDirect.p99 <= 2 * (rateFloor.p99 - rateDirect.p99))}`,
    `- CPU per 1000 requests per sidecar: ${sidecarCpu.toFixed(3)} s (target ≤ Caddy's per hop, ${caddyCpu.toFixed(3)} s): ${check(sidecarCpu <= caddyCpu)}`,
    `- resident memory per sidecar right after load: ${mib(memAfter)} (target ≤ 64 MiB): ${check(memAfter <= 64)}`,
    `- resident memory per sidecar idle: ${mib(memIdle)} (target ≤ 58 MiB): ${check(memIdle <= 58)}`,
    "",
  ];
}
