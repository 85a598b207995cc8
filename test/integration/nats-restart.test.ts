import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/log.js";
import { NatsClient, type NatsStatus } from "../../src/nats/connect.js";
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

  it("tells NatsClient's hooks: onStatus sees disconnected then connected; a connect made meanwhile hears 'unreachable' at every attempt", async () => {
    const options = { servers: [nats.url], name: "hooks" };
    const log = silentLogger();
    const client = await NatsClient.connect(options, log);
    const statuses: [NatsStatus, string | undefined][] = [];
    const off = client.onStatus((status, server) => statuses.push([status, server]));
    const waiting: { why: string; error: string }[] = [];
    const stop = new AbortController();
    let late: Promise<NatsClient> | undefined;
    try {
      await nats.kill();
      await waitFor(() => statuses.length > 0, "onStatus to report the disconnection");
      assert.equal(client.status(), "disconnected");
      late = NatsClient.connect(options, log, stop.signal, (why, error) => waiting.push({ why, error }));
      // Two attempts: the second is one that is not logged (only the first and every tenth are).
      await waitFor(() => waiting.length >= 2, "two failed connection attempts");
      assert.deepEqual(waiting.map((w) => w.why), waiting.map(() => "unreachable"));
      assert.ok(waiting.every((w) => w.error.length > 0), "each call carries the error");

      await nats.restart();
      await waitFor(() => statuses.length > 1, "onStatus to report the reconnection", 10_000);
      const lateClient = await late;
      assert.equal(lateClient.status(), "connected");
      await lateClient.close();
      assert.deepEqual(statuses.map(([s]) => s), ["disconnected", "connected"]);
      assert.ok(statuses.every(([, server]) => server?.includes(String(nats.port))), `the server is named: ${JSON.stringify(statuses)}`);
      off();
      await client.close();
      assert.equal(client.status(), "closed");
      assert.equal(statuses.length, 2, "no call after unsubscribing");
    } finally {
      stop.abort();
      await late?.then((c) => c.close(), () => undefined);
      await client.close();
    }
  });
});
