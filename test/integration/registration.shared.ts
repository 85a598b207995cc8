import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, registryNodes, rpc, SidecarProcess, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

const TTL = 1500;
const HEARTBEAT = TTL / 3;
const INTERVAL = 100;
const FAILURES = 2;

export interface Backend {
  name: string;
  /** The registry part of testSettings. */
  registry: () => { dir: string } | { nats: string };
  setup: () => Promise<void>;
  teardown: () => Promise<void>;
}

/**
 * The registration flow, identical on every registry backend: balanced calls over two healthy
 * instances, health-driven deregistration and return, SIGTERM and kill -9 of a sidecar process.
 */
export function registrationSuite(backend: Backend): void {
  describe(`registration and /rpc on the ${backend.name} registry`, () => {
    const apps: TestApp[] = [];
    const sidecars: Sidecar[] = [];
    let caller: Sidecar;
    let a1: TestApp;
    let a2: TestApp;
    let s1: Sidecar;
    let s2: Sidecar;
    let base: string;

    const settings = (service: string, app: TestApp, extra?: string[]) =>
      testSettings({ service, appPort: app.port, registry: backend.registry(), ...(extra ? { extra } : {}) });

    before(async () => {
      await backend.setup();
      a1 = await TestApp.start("a1");
      a2 = await TestApp.start("a2");
      const callerApp = await TestApp.start("caller");
      apps.push(a1, a2, callerApp);
      s1 = await startSidecar(settings("greeter", a1));
      s2 = await startSidecar(settings("greeter", a2));
      caller = await startSidecar(settings("client", callerApp));
      sidecars.push(s1, s2, caller);
      base = apiUrl(caller);
      await waitFor(async () => (await registryNodes(base, "greeter")).length === 2 && (await registryNodes(base, "client")).length === 1, "both greeter nodes and the caller itself in the caller's view");
    });

    after(async () => {
      await Promise.all(sidecars.map((s) => s.close()));
      await Promise.all(apps.map((a) => a.stop()));
      await backend.teardown();
    });

    it("registers both instances with the record of DESIGN §3", async () => {
      const res = await fetch(`${base}/registry/greeter`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { service: string; nodes: Record<string, unknown>[] };
      assert.equal(body.service, "greeter");
      const ids = body.nodes.map((n) => n.id).sort();
      assert.deepEqual(ids, [s1.node.id, s2.node.id].sort());
      for (const n of body.nodes) {
        assert.match(String(n.address), /^127\.0\.0\.1:\d+$/);
        assert.notEqual(n.address, "127.0.0.1:0", "the bound port is registered, not 0");
        assert.equal(n.transport, "http");
        assert.ok(!Number.isNaN(Date.parse(String(n.registeredAt))));
      }
      const all = (await (await fetch(`${base}/registry`)).json()) as { services: { service: string }[] };
      assert.deepEqual(all.services.map((s) => s.service).sort(), ["client", "greeter"]);
    });

    it("balances calls over both instances in a real rotation", async () => {
      const before1 = a1.callCount();
      const before2 = a2.callCount();
      for (let i = 0; i < 10; i++) {
        const r = await rpc(base, { service: "greeter", endpoint: "Greeter.Hello", request: { i } });
        assert.equal(r.status, 200);
      }
      assert.equal(a1.callCount() - before1, 5);
      assert.equal(a2.callCount() - before2, 5);
    });

    it("accepts the micro `method` alias and maps Service.Method to POST /Service/Method", async () => {
      const r = await rpc(base, { service: "greeter", method: "Greeter.Hello", request: { name: "Ada" } });
      assert.equal(r.status, 200);
      assert.equal(r.body.path, "/Greeter/Hello");
      assert.equal(r.body.method, "POST");
      assert.deepEqual(JSON.parse(r.body.body), { name: "Ada" });
    });

    it("an app failing its health check leaves within interval × threshold, gets no calls, and returns", async () => {
      a2.healthy = false;
      const t0 = Date.now();
      await waitFor(async () => !(await registryNodes(base, "greeter")).includes(s2.node.id), "a2 to leave the caller's view");
      const took = Date.now() - t0;
      // interval × threshold, plus one check in progress and the registry's propagation.
      assert.ok(took <= INTERVAL * (FAILURES + 1) + 700, `left after ${took}ms`);
      assert.equal(s2.registered, false);
      const before2 = a2.callCount();
      for (let i = 0; i < 6; i++) assert.equal((await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" })).status, 200);
      assert.equal(a2.callCount(), before2, "an unhealthy app receives no calls");

      a2.healthy = true;
      await waitFor(async () => (await registryNodes(base, "greeter")).includes(s2.node.id), "a2 to return");
      const back = a2.callCount();
      for (let i = 0; i < 4; i++) await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" });
      assert.ok(a2.callCount() > back, "a recovered app receives calls again");
    });

    it("a SIGTERM'd sidecar deregisters at once and exits 0", async () => {
      const app = await TestApp.start("term");
      apps.push(app);
      const p = await SidecarProcess.start(settings("terminated", app));
      await waitFor(async () => (await registryNodes(base, "terminated")).includes(p.nodeId), "the child's node in the caller's view");
      const t0 = Date.now();
      p.kill("SIGTERM");
      await waitFor(async () => (await registryNodes(base, "terminated")).length === 0, "the node to leave", TTL);
      const took = Date.now() - t0;
      assert.ok(took < TTL / 2, `removed after ${took}ms, well before the TTL (${TTL}ms)`);
      assert.equal(await p.exit(), 0);
      assert.ok(p.find("deregistered"), "logs the deregistration");
    });

    it("a sidecar killed with -9 vanishes from callers' views within TTL + one heartbeat", async () => {
      const app = await TestApp.start("nine");
      apps.push(app);
      const p = await SidecarProcess.start(settings("killed", app));
      await waitFor(async () => (await registryNodes(base, "killed")).includes(p.nodeId), "the child's node in the caller's view");
      p.kill("SIGKILL");
      const t0 = Date.now();
      await p.exit();
      // Until it expires the record points at a dead listener: callers get 502, not a hang.
      const r = await rpc(base, { service: "killed", endpoint: "Any.Thing" });
      assert.equal(r.status, 502);
      assert.equal(r.body.error.code, "UPSTREAM_UNREACHABLE");
      await waitFor(async () => (await registryNodes(base, "killed")).length === 0, "the killed node to expire", TTL + HEARTBEAT + 1000);
      const took = Date.now() - t0;
      assert.ok(took <= TTL + HEARTBEAT, `expired after ${took}ms (TTL ${TTL} + heartbeat ${HEARTBEAT})`);
      assert.ok(took >= TTL - HEARTBEAT - 100, `expired after ${took}ms: not before its TTL`);
      // Known but gone: 503, not 404.
      const gone = await rpc(base, { service: "killed", endpoint: "Any.Thing" });
      assert.equal(gone.status, 503);
      assert.equal(gone.body.error.code, "NO_HEALTHY_NODE");
    });
  });
}
