/**
 * `npm run bench`: every benchmark, then BENCHMARKS.md (machine, command, results).
 * Needs Debian's wrk, and for the request path nginx, haproxy, caddy and nats-server: installed
 * when missing (as root). BENCH_SECONDS sets the length of each case (default 5), BENCH_ROUNDS
 * the request path's rounds (default 3).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { requireDebian, ROOT, SECONDS } from "./lib.js";
import { peerVersions } from "./peers.js";
import { proxyLibsBench } from "./proxy-libs.js";
import { relayBench } from "./relay.js";
import { PEER_WARMUP_SECONDS, rounds, rpcBench, WARMUP_SECONDS } from "./rpc.js";

async function main(): Promise<void> {
  requireDebian("wrk", "wrk");
  const only = process.env.BENCH_ONLY;
  const rpc = !only || only === "rpc";
  const sections = [
    ...(rpc ? await rpcBench() : []),
    ...(!only || only === "relay" ? await relayBench() : []),
    ...(!only || only === "proxy-libs" ? await proxyLibsBench() : []),
  ];
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const lines = [
    "# Benchmarks",
    "",
    `Written by \`npm run bench\` (bench/run.ts). Load generator: wrk, 1 thread, ${SECONDS} s per case, on loopback; each table compares with the app served directly in the same run.`,
    ...(rpc
      ? [
          "",
          `Request path: ${rounds()} after a warm-up (Node processes: ${WARMUP_SECONDS} s at 8 connections, then as long at 1; nginx, HAProxy, Caddy: ${PEER_WARMUP_SECONDS} s at 8), each round every case at 1 connection, then at 32, then at 1000 requests/s; the tables give the median of the rounds. Peers: ${peerVersions()} (Debian's packages).`,
        ]
      : []),
    "",
    `Machine: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}. Run: ${new Date().toISOString()}.`,
    "On 2 cores the load generator, the app and the sidecars share the CPU, so absolute numbers are low; compare rows of one run, not runs of different machines.",
    "",
    ...sections,
  ];
  // A partial run (BENCH_ONLY) prints its sections only: BENCHMARKS.md always holds one whole run.
  // The scale section (npm run bench:scale, between its markers) is another run's: kept as it is.
  const file = path.join(ROOT, "BENCHMARKS.md");
  const scale = existsSync(file) ? /<!-- scale:begin -->[\s\S]*?<!-- scale:end -->/.exec(readFileSync(file, "utf8"))?.[0] : undefined;
  if (!only) writeFileSync(file, [...lines, ...(scale ? ["", scale, ""] : [])].join("\n"));
  process.stdout.write(lines.join("\n"));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).message}\n`);
  process.exit(1);
});
