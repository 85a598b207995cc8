/**
 * `npm run bench`: every benchmark, then BENCHMARKS.md (machine, command, results).
 * Needs wrk (apt-get install -y wrk). BENCH_SECONDS sets the length of each case (default 5).
 */
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { requireDebian, ROOT, SECONDS } from "./lib.js";
import { proxyLibsBench } from "./proxy-libs.js";
import { relayBench } from "./relay.js";
import { rpcBench } from "./rpc.js";

async function main(): Promise<void> {
  requireDebian("wrk", "wrk");
  const only = process.env.BENCH_ONLY;
  const sections = [
    ...(!only || only === "rpc" ? await rpcBench() : []),
    ...(!only || only === "relay" ? await relayBench() : []),
    ...(!only || only === "proxy-libs" ? await proxyLibsBench() : []),
  ];
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const lines = [
    "# Benchmarks",
    "",
    `Written by \`npm run bench\` (bench/run.ts). Load generator: wrk, 1 thread, ${SECONDS} s per case after a warm-up (request path: ${process.env.BENCH_WARMUP ?? 3} s at 8 connections, then as long at 1), on loopback; each table compares with the app served directly in the same run.`,
    "",
    `Machine: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}. Run: ${new Date().toISOString()}.`,
    "On 2 cores the load generator, the app and the sidecars share the CPU, so absolute numbers are low; compare rows of one run, not runs of different machines.",
    "",
    ...sections,
  ];
  // A partial run (BENCH_ONLY) prints its sections only: BENCHMARKS.md always holds one whole run.
  if (!only) writeFileSync(path.join(ROOT, "BENCHMARKS.md"), lines.join("\n"));
  process.stdout.write(lines.join("\n"));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).message}\n`);
  process.exit(1);
});
