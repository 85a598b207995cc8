import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config/load.js";
import { SidecarError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { freePort } from "../support/ports.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, rpc, SidecarProcess, startSidecar, testSettings, waitFor } from "../support/sidecar.js";


describe("the sidecar process: start-up, config errors, draining (local registry)", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const procs: SidecarProcess[] = [];
  let caller: Sidecar;
  let base: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-life-"));
    const app = await TestApp.start("caller");
    apps.push(app);
    caller = await startSidecar(testSettings({ service: "client", appPort: app.port, registry: { dir } }));
    base = apiUrl(caller);
  });

  after(async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.kill("SIGKILL");
    await caller.close();
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("with no app listening it says what it waits for, registers nothing, then registers when the app comes", async () => {
    const port = await freePort();
    const p = SidecarProcess.spawn(["start", ...[...testSettings({ service: "late", appPort: port, registry: { dir } }), "log.format=json"].flatMap((s) => ["--set", s])]);
    procs.push(p);
    const embedded = await p.waitForLog("embedded mode: no NATS configured, using the local registry. It works on this machine only: no discovery across hosts, no replication. Add a `nats` section (or registry.kind: nats) for more than one machine.");
    assert.equal(embedded.level, "warn");
    const waiting = await p.waitForLog("waiting for the app to pass its health check");
    assert.equal(waiting.target, `http://127.0.0.1:${port}/health`);
    assert.match(String(waiting.error), /ECONNREFUSED/);
    assert.equal((await fetch(`${base}/registry/late`)).status, 404, "nothing registered before the app passes");
    assert.equal((await fetch(`${p.apiUrl}/health/ready`)).status, 503);

    const app = await TestApp.start("late", port);
    apps.push(app);
    await p.registered();
    await waitFor(async () => (await fetch(`${base}/registry/late`)).status === 200, "the late node in the caller's view");
    assert.equal((await rpc(base, { service: "late", endpoint: "Late.Hello" })).status, 200);
    p.kill("SIGTERM");
    assert.equal(await p.exit(), 0);
  });

  it("a log reader that goes away (EPIPE) costs the log lines, not the process: calls still go through", async () => {
    const app = await TestApp.start("logless");
    apps.push(app);
    const p = await SidecarProcess.start([...testSettings({ service: "logless", appPort: app.port, registry: { dir } }), "log.requests=true"]);
    procs.push(p);
    await waitFor(async () => (await fetch(`${base}/registry/logless`)).status === 200, "the node in the caller's view");
    p.proc.stdout!.destroy();
    // Each call writes access lines to the closed pipe.
    await waitFor(async () => {
      assert.equal((await fetch(`${p.apiUrl}/health/live`)).status, 200);
      return p.stderr.includes("the log output failed");
    }, "the sidecar to notice the closed log output");
    assert.match(p.stderr, /the log output failed \(EPIPE\); logging stops, the sidecar keeps running/);
    for (let i = 0; i < 5; i++) assert.equal((await rpc(base, { service: "logless", endpoint: "Logless.Hello" })).status, 200);
    assert.equal((await fetch(`${p.apiUrl}/health`)).status, 200);
    assert.equal(p.proc.exitCode, null, "still running");
    p.kill("SIGTERM");
    assert.equal(await p.exit(), 0);
  });

  it("SIGTERM lets a call in flight finish before exiting 0", async () => {
    const app = await TestApp.start("draining");
    apps.push(app);
    const p = await SidecarProcess.start(testSettings({ service: "draining", appPort: app.port, registry: { dir } }));
    procs.push(p);
    await waitFor(async () => (await fetch(`${base}/registry/draining`)).status === 200, "the node in the caller's view");
    const inFlight = rpc(base, { service: "draining", endpoint: "/slow?ms=600" });
    await waitFor(() => app.calls.length > 0, "the slow call to reach the app");
    p.kill("SIGTERM");
    const r = await inFlight;
    assert.equal(r.status, 200);
    assert.equal(r.body, "slow");
    assert.equal(await p.exit(), 0);
    const lines = p.lines.map((l) => l.message);
    assert.ok(lines.indexOf("deregistered") < lines.indexOf("stopped"), "deregistered before stopping");
  });

  it("an invalid config exits 2 naming the file, the key, the value and what was expected", async () => {
    const file = path.join(dir, "bad.yaml");
    writeFileSync(file, "service: { name: greeter }\napp: { port: 70000 }\nlog: { level: loud }\n");
    const p = SidecarProcess.spawn(["start", "--config", file], { SIDECAR_REGISTRY_TTL: "soon" });
    assert.equal(await p.exit(), 2);
    assert.match(p.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: app\\.port: got 70000: expected a port 0-65535`));
    assert.match(p.stderr, /log\.level: got "loud"/);
    assert.match(p.stderr, /environment SIDECAR_REGISTRY_TTL: registry\.ttl: got "soon": expected registry\.ttl as a duration/);
  });

  it("an api port already in use is a clear start-up error, exit 1", async () => {
    const app = await TestApp.start("busy");
    apps.push(app);
    const settings = testSettings({ service: "busy", appPort: app.port, registry: { dir } }).map((s) => (s === "api.port=0" ? `api.port=${app.port}` : s));
    const p = SidecarProcess.spawn(["start", ...[...settings, "log.format=json"].flatMap((s) => ["--set", s])]);
    assert.equal(await p.exit(), 1);
    const line = p.find("cannot start");
    assert.match(String(line?.error), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${app.port} for the api listener: .*EADDRINUSE`));
  });

  it("unknown commands and flags print the usage and exit 2", async () => {
    const p = SidecarProcess.spawn(["launch"]);
    assert.equal(await p.exit(), 2);
    assert.match(p.stderr, /unknown command 'launch'/);
    assert.match(p.stderr, /Usage: sidecar start/);
  });
});

describe("the in-process sidecar's one lifecycle: close order, double close, no reopening (fastify's close.test.js)", () => {
  let dir: string;
  const apps: TestApp[] = [];

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-close-"));
  });

  after(async () => {
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** The documented shutdown order (src/sidecar.ts #close): the drain phase, then the stack, last started first. */
  const ORDER = [
    "health", "registrar", "front:deregister", "subscriptions", "gate:drain", "micro-broker",
    "listeners", "registry-view", "transports",
    "app-client", "front", "relay", "broker", "registry",
  ];

  it("closes its components in the documented order: deregister first, the registry last", async () => {
    const app = await TestApp.start("closing");
    apps.push(app);
    const sidecar = await startSidecar(testSettings({ service: "closing", appPort: app.port, registry: { dir } }));
    await waitFor(async () => sidecar.registered, "the node registered");
    assert.deepEqual(sidecar.closedComponents, [], "nothing closed before close()");
    await sidecar.close();
    assert.deepEqual(sidecar.closedComponents, ORDER);
  });

  it("with NATS (registry and transport): NATS inbound stops in the drain phase, the NATS connection closes last", async () => {
    const nats = await NatsServer.start();
    try {
      const app = await TestApp.start("natsclosing");
      apps.push(app);
      const sidecar = await startSidecar(testSettings({ service: "natsclosing", appPort: app.port, registry: { nats: nats.url }, extra: ["transport.kind=nats"] }));
      await waitFor(async () => sidecar.registered, "the node registered");
      await sidecar.close();
      const order = [...ORDER];
      order.splice(order.indexOf("micro-broker") + 1, 0, "nats-inbound");
      assert.deepEqual(sidecar.closedComponents, [...order, "nats"]);
    } finally {
      await nats.stop();
    }
  });

  it("a second close() is the same close: it resolves without doing anything again; a caller mid-close waits for it", async () => {
    const app = await TestApp.start("twice");
    apps.push(app);
    const sidecar = await startSidecar(testSettings({ service: "twice", appPort: app.port, registry: { dir } }));
    const first = sidecar.close();
    const second = sidecar.close(); // arrives mid-close
    assert.equal(second, first);
    await second;
    assert.deepEqual(sidecar.closedComponents, ORDER, "the caller mid-close returned only once everything was closed");
    await sidecar.close();
    assert.deepEqual(sidecar.closedComponents, ORDER, "nothing closed twice");
  });

  it("start() after close() rejects with CLOSED, and opens nothing", async () => {
    const app = await TestApp.start("reopen");
    apps.push(app);
    const sidecar = await startSidecar(testSettings({ service: "reopen", appPort: app.port, registry: { dir } }));
    const api = apiUrl(sidecar);
    await sidecar.close();
    await assert.rejects(sidecar.start(), (err: unknown) => {
      assert.ok(err instanceof SidecarError);
      assert.equal(err.code, "CLOSED");
      assert.equal(err.status, 503);
      return true;
    });
    await assert.rejects(fetch(`${api}/health/live`), "the api listener stays closed");
    assert.deepEqual(sidecar.closedComponents, ORDER);
  });

  it("a sidecar closed before it started closes nothing, and cannot be started", async () => {
    const { config } = loadConfig({ set: testSettings({ service: "never", appPort: 1, registry: { dir } }), env: {}, cwd: dir });
    const sidecar = new Sidecar(config, silentLogger());
    await sidecar.close();
    assert.deepEqual(sidecar.closedComponents, []);
    await assert.rejects(sidecar.start(), { code: "CLOSED" });
  });
});
