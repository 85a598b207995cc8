/**
 * Which library should carry the proxy route? One forwarding hop to the echo app, built four
 * ways (bench/forwarder.mjs), measured in one run against the app served directly.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startPrinting, table, wrk, type Result } from "./lib.js";

const KINDS = ["node-http", "http-proxy-3", "http-proxy", "undici", "express"] as const;

export async function proxyLibsBench(): Promise<string[]> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-bench-"));
  const lua = path.join(tmp, "put.lua");
  writeFileSync(lua, `wrk.method = "PUT"\nwrk.body = '${"x".repeat(512)}'\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
  const app = await startPrinting("bench/echo-app.mjs", []);
  const forwarders = await Promise.all(KINDS.map(async (k) => ({ kind: k, ...(await startPrinting("bench/forwarder.mjs", [k, String(app.port)])) })));
  const results: Result[] = [];
  try {
    for (const f of forwarders) wrk("warm-up", `http://127.0.0.1:${f.port}/put`, 8, lua, 1);
    for (const c of [1, 32]) {
      results.push(wrk("direct: app alone (baseline)", `http://127.0.0.1:${app.port}/put`, c, lua));
      for (const f of forwarders) results.push(wrk(`one hop: ${f.kind}`, `http://127.0.0.1:${f.port}/put`, c, lua));
    }
  } finally {
    for (const p of [app.proc, ...forwarders.map((f) => f.proc)]) p.kill("SIGTERM");
    rmSync(tmp, { recursive: true, force: true });
  }
  return [
    "## Proxy library choice (one forwarding hop, PUT of 512 bytes)",
    "",
    "`bench/forwarder.mjs` builds the same hop with each candidate: hand-written `node:http` (what the sidecar's http transport does), `http-proxy-3` 1.23 (2.x needs Node 22), `http-proxy` 1.18 (unmaintained since 2020), `undici` 7 `Pool.stream()`, and the `node:http` hop behind an `express` 5 app (the router the design first named; dev dependency only).",
    "",
    ...table(results, (r) => r.name.startsWith("direct")),
    "",
  ];
}
