import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const TTL = 1500;

/** NATS going away and coming back: callers keep their view, records return, watches resume. */
describe("NATS restart", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let caller: Sidecar;

  const start = async (service: string) => {
    const app = await TestApp.start(service);
    apps.push(app);
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { nats: nats.url } }));
    sidecars.push(s);
    return s;
  };
  const nodes = (service: string) => registryNodes(base, service);

  before(async () => {
    nats = await NatsServer.start();
    caller = await start("client");
    base = apiUrl(caller);
    await start("greeter");
    await waitFor(async () => (await nodes("greeter")).length === 1, "greeter in the view");
  });

  after(() => teardown({ sidecars, apps, nats }));

  it("reports the registry as disconnected while NATS is down, and recovers everything after", async () => {
    await nats.kill();
    await waitFor(async () => (await fetch(`${base}/health`)).status === 503, "/health to report the outage");
    const h = (await (await fetch(`${base}/health`)).json()) as { registry: string };
    assert.equal(h.registry, "disconnected");
    // Calls keep being served from the cached view during the outage.
    assert.equal((await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" })).status, 200);
    // Publishing fails fast with a clear code instead of hanging until a client timeout.
    const p0 = Date.now();
    const pub = await fetch(`${base}/publish/orders.created`, { method: "POST", body: "{}" });
    assert.equal(pub.status, 503);
    assert.equal(((await pub.json()) as { error: { code: string } }).error.code, "BROKER_UNAVAILABLE");
    assert.equal(pub.headers.get("retry-after"), "1");
    assert.ok(Date.now() - p0 < 500, `answered after ${Date.now() - p0}ms`);

    await nats.restart();
    await waitFor(async () => (await fetch(`${base}/health`)).status === 200, "/health to recover", 10_000);

    // The watch resumed: a node registered after the restart appears in the caller's view.
    const late = await start("late");
    await waitFor(async () => (await nodes("late")).includes(late.node.id), "a node registered after the restart", 5_000);

    // Heartbeats still reach the view: after two TTLs, greeter is still there and callable.
    const t0 = Date.now();
    await waitFor(() => Date.now() - t0 > 2 * TTL, "two TTLs to pass", 3 * TTL);
    assert.equal((await nodes("greeter")).length, 1, "heartbeats after the restart keep the record alive in the view");
    assert.equal((await rpc(base, { service: "greeter", endpoint: "Greeter.Hello" })).status, 200);
  });
});
